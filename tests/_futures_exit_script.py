"""Run by test_futures.py: exit with a call still running on an executor.

Usage: python _futures_exit_script.py METHOD MODE, MODE one of "exit" (no
shutdown at all) and "no-wait" (shutdown(wait=False) first).  Prints the
workers' pids once the call runs, then exits with it still running.
"""

import sys

import _futures_helpers as fh

import multiprocess
from multiprocess.futures import ProcessPoolExecutor

if __name__ == "__main__":
    method, mode = sys.argv[1:]
    ctx = multiprocess.get_context(method)
    started, release = ctx.Event(), ctx.Event()  # release: never set
    executor = ProcessPoolExecutor(
        2, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    )
    executor.submit(fh.block, 1)
    if not started.wait(60):
        sys.exit("the call never started")
    print(" ".join(str(pid) for pid in executor._processes), flush=True)
    if mode == "no-wait":
        executor.shutdown(wait=False)
