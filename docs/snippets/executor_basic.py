import concurrent.futures
import math
import time

from multiprocess import TaskTimeoutError
from multiprocess.futures import ProcessPoolExecutor

if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=2) as ex:
        futures = [ex.submit(lambda x: x**2, n) for n in range(5)]
        print(sorted(f.result() for f in concurrent.futures.as_completed(futures)))
        print(list(ex.map(math.factorial, range(6), chunksize=2)))

        slow = ex.schedule(time.sleep, args=(30,), task_timeout=0.5)  # submit with a limit
        try:
            slow.result()
        except TaskTimeoutError:
            print("timed out; the worker was replaced")
        print(ex.submit(abs, -3).result())

# Output:
# [0, 1, 4, 9, 16]
# [1, 1, 2, 6, 24, 120]
# timed out; the worker was replaced
# 3
