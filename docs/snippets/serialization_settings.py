import pickle

import multiprocess as mp
from multiprocess import reduction

if __name__ == "__main__":
    square = lambda x: x * x
    data = reduction.dumps(square)  # the default serializer: 'dill'
    print(pickle.loads(data)(7))  # an ordinary pickle: any unpickler loads it

    try:
        reduction.dumps(square, serializer="pickle")  # the standard library's behaviour
    except pickle.PicklingError:
        print("pickle refuses a lambda")

    ctx = mp.get_context("spawn")
    ctx.set_serializer("pickle")  # this context only
    print(ctx.get_serializer(), mp.get_serializer())

# Output:
# 49
# pickle refuses a lambda
# pickle dill
