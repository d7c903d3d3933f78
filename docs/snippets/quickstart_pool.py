import multiprocess as mp


def make_scaler(factor):
    def scale(x):  # a closure: the standard library's pickle refuses it
        return x * factor

    return scale


if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print(pool.map(lambda x: x * x, range(6)))
        print(pool.map(make_scaler(10), range(6)))

# Output:
# [0, 1, 4, 9, 16, 25]
# [0, 10, 20, 30, 40, 50]
