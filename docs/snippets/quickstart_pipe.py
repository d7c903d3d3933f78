import multiprocess as mp


def serve(conn):
    func = conn.recv()  # a lambda, sent by the parent
    conn.send(func(41))


if __name__ == "__main__":
    offset = 1  # a global the lambda uses, assigned only under the guard
    parent, child = mp.Pipe()
    p = mp.get_context("spawn").Process(target=serve, args=(child,))
    p.start()
    parent.send(lambda x: x + offset)
    print(parent.recv())
    p.join()

# Output:
# 42
