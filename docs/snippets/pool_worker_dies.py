import os
import signal

import multiprocess as mp

if __name__ == "__main__":
    with mp.Pool(2) as pool:
        doomed = pool.apply_async(lambda: os.kill(os.getpid(), signal.SIGKILL))
        try:
            doomed.get(timeout=60)
        except mp.pool.TerminatedWorkerError as e:
            # The message names the worker's pid, "-9 (SIGKILL)" and the likely causes.
            print(type(e).__name__, "SIGKILL" in str(e))
        print(pool.map(lambda x: x * x, range(5)))  # the pool goes on

# Output:
# TerminatedWorkerError True
# [0, 1, 4, 9, 16]
