import multiprocess as mp


def grow(mib):
    data = bytearray(mib << 20)
    data[::4096] = b"x" * len(data[::4096])  # touch every page: resident memory
    return len(data) >> 20


if __name__ == "__main__":
    with mp.Pool(2, memory_limit="200MiB", max_memory_per_child="100MiB") as pool:
        results = pool.imap(grow, [10, 400, 20])
        for mib in [10, 400, 20]:
            try:
                print(mib, "->", next(results))
            except mp.MemoryLimitError:
                print(mib, "-> MemoryLimitError: the worker went over 200 MiB")

# Output:
# 10 -> 10
# 400 -> MemoryLimitError: the worker went over 200 MiB
# 20 -> 20
