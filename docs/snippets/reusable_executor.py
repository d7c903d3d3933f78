from multiprocess.futures import get_reusable_executor

if __name__ == "__main__":
    first = get_reusable_executor(2)
    for n in range(3):
        ex = get_reusable_executor(2)  # the same executor each time
        print(sum(ex.map(lambda x, n=n: x * n, range(10))), ex is first)

# Output:
# 0 True
# 45 True
# 90 True
