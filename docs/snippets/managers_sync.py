import multiprocess as mp


def record(shared, key):
    shared[key] = shared["rule"](key)  # call the lambda the dict holds


if __name__ == "__main__":
    with mp.Manager() as manager:
        shared = manager.dict(rule=lambda k: k.upper())  # a lambda inside a shared dict
        workers = [mp.Process(target=record, args=(shared, k)) for k in "abc"]
        for p in workers:
            p.start()
        for p in workers:
            p.join()
        keys = shared.keys()  # one request to the server: a list
        print(sorted(k for k in keys if k != "rule"), shared["b"])

# Output:
# ['a', 'b', 'c'] B
