"""Importable objects for tests/test_reduction.py (pickled by reference)."""

from __future__ import annotations

import functools


def add(a, b):
    return a + b


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y

    @classmethod
    def origin(cls):
        return cls(0, 0)

    def __eq__(self, other):
        return type(other) is type(self) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


def make_adder(n):
    """A closure: not importable, goes to dill."""

    def adder(x):
        return x + n

    return adder


def make_counter():
    """A closure with nonlocal state."""
    count = 0

    def counter():
        nonlocal count
        count += 1
        return count

    return counter


def make_factorial():
    """A nested function that calls itself."""

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    return fact


@functools.cache
def cached_square(x):
    return x * x


# Defined as if in a script run as __main__: exec'd into a namespace named
# '__main__', so that its functions and classes say __module__ == '__main__'.
MAIN_SOURCE = """
import functools

FACTOR = 3

class Acc:
    kind = "acc"

    def __init__(self, start):
        self.total = start

    def add(self, v):
        self.total += v * FACTOR
        return self.total

def scale(x):
    return x * FACTOR

def is_acc(obj):
    return isinstance(obj, Acc)

fib = lambda n: n if n < 2 else fib(n - 1) + fib(n - 2)

shared = []

def push(v):
    shared.append(v)
    return list(shared)

def push_too(v):
    shared.append(v)
    return list(shared)

scale_partial = functools.partial(scale)
"""


def main_namespace():
    namespace = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<main-like>", "exec"), namespace)  # noqa: S102
    return namespace
