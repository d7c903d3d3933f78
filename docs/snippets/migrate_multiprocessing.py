import multiprocess as mp  # was: import multiprocessing as mp


class Point:  # defined in __main__: spawned children cannot import it by name
    def __init__(self, x, y):
        self.x, self.y = x, y


if __name__ == "__main__":
    mp.set_start_method("spawn")
    with mp.Pool(2) as pool:
        points = pool.map(lambda i: Point(i, -i), range(3))
    print([(p.x, p.y) for p in points])

# Output:
# [(0, 0), (1, -1), (2, -2)]
