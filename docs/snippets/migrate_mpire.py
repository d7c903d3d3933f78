import multiprocess as mp


def area(width, height):
    return width * height


if __name__ == "__main__":
    done = []
    with mp.Pool(2, maxtasksperchild=100) as pool:  # mpire: worker_lifespan=100
        # mpire unpacks tuples into arguments; starmap does that here.
        print(pool.starmap(area, [(1, 2), (3, 4), (5, 6)], chunksize=1))
        # progress=True draws a tqdm bar; a callable gets (done, total).
        squares = pool.map(lambda x: x * x, range(100), progress=lambda d, t: done.append(d))
        print(sum(squares), done[-1])

# Output:
# [2, 12, 30]
# 328350 100
