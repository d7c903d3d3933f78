import multiprocess as mp


def add(counter, squares, n):
    for i in range(n):
        with counter.get_lock():  # += on a shared Value is not atomic
            counter.value += 1
        squares[i] = i * i


if __name__ == "__main__":
    counter = mp.Value("i", 0)  # a C int in shared memory, with a lock
    squares = mp.Array("d", 5)  # five C doubles
    workers = [mp.Process(target=add, args=(counter, squares, 5)) for _ in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    print(counter.value, squares[:])

# Output:
# 20 [0.0, 1.0, 4.0, 9.0, 16.0]
