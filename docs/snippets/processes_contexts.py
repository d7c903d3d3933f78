import multiprocess as mp


def greet(q, name):
    q.put(f"hello {name} from {mp.current_process().name}")


if __name__ == "__main__":
    for method in ["fork", "spawn", "forkserver"]:
        ctx = mp.get_context(method)  # a context: one start method, its own objects
        q = ctx.Queue()
        p = ctx.Process(target=greet, args=(q, method), name=f"{method}-child")
        p.start()
        print(q.get())
        p.join()
        print(p.exitcode)

# Output:
# hello fork from fork-child
# 0
# hello spawn from spawn-child
# 0
# hello forkserver from forkserver-child
# 0
