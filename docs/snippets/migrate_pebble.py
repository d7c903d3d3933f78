import time

from multiprocess import TaskTimeoutError
from multiprocess.futures import ProcessPoolExecutor


def work(seconds):
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=2, max_tasks_per_child=10) as pool:
        futures = [pool.schedule(work, args=[s], task_timeout=1) for s in (0, 0.1, 30)]
        for future in futures:
            try:
                print(future.result())
            except TimeoutError as error:  # TaskTimeoutError is a TimeoutError
                print("timed out:", isinstance(error, TaskTimeoutError))

# Output:
# 0
# 0.1
# timed out: True
