"""Run by test_ctrl_c.py: a ^C that the OS delivers to another thread than the main one.

Usage: python _ctrl_c_script.py METHOD CASE.  The main thread blocks in a pool
call whose tasks never end; once they run, a thread of ours sends SIGINT to
itself (as a Jupyter kernel's interrupt or a terminal's ^C may land on any
thread).  The main thread must raise KeyboardInterrupt: prints "interrupted".
"""

import signal
import sys
import threading

import _pool_helpers as ph

import multiprocess

if __name__ == "__main__":
    method, case = sys.argv[1:]
    ctx = multiprocess.get_context(method)
    started = ctx.Event()
    pool = ctx.Pool(2, initializer=ph.init_started_event, initargs=(started,))

    def interrupt_from_this_thread():
        if started.wait(60):
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    threading.Thread(target=interrupt_from_this_thread, daemon=True).start()
    try:
        if case == "map":
            pool.map(ph.announce_then_block, range(4), chunksize=1)
        elif case == "imap":
            next(pool.imap(ph.announce_then_block, range(4)))
        elif case == "get":
            pool.apply_async(ph.announce_then_block, (0,)).get()
        elif case == "join":
            pool.map_async(ph.announce_then_block, range(4), chunksize=1)
            pool.close()
            pool.join()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    pool.terminate()
