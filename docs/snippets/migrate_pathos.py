import multiprocess as mp

if __name__ == "__main__":
    k = 3
    with mp.Pool(2) as pool:
        print(pool.map(lambda x: x * x + x, range(10)))
        print(pool.starmap_async(lambda x, y: x * y + k, zip([1, 2], [3, 4])).get())

# Output:
# [0, 2, 6, 12, 20, 30, 42, 56, 72, 90]
# [6, 11]
