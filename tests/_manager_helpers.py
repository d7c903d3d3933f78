"""Functions and types that child processes use in the manager tests.

They live in an importable module so that spawn and forkserver children (and
manager server processes) can find them.
"""

from __future__ import annotations

import functools
import os
import time

from multiprocess.managers import BaseManager, BaseProxy, MakeProxyType

# -- SyncManager types, used from a child -------------------------------------


def use_queue(q, out):
    """Take two items, put their sum back."""
    a = q.get(timeout=30)
    b = q.get(timeout=30)
    q.put(a + b)
    out.put("ok")


def use_joinable_queue(q, out):
    item = q.get(timeout=30)
    q.task_done()
    out.put(item)


def use_event(ev, out):
    out.put(ev.wait(30))
    ev.clear()


def hold_lock(lock, locked, release, out):
    """Take ``lock``, say so, wait for ``release``, then let it go."""
    with lock:
        locked.set()
        release.wait(30)
    out.put("released")


def use_rlock(rlock, out):
    rlock.acquire()
    rlock.acquire()
    rlock.release()
    rlock.release()
    out.put("ok")


def acquire_semaphore(sem, out):
    out.put(sem.acquire(timeout=30))


def wait_condition(cond, ns, out):
    with cond:
        out.put(cond.wait_for(lambda: ns.ready, timeout=30))


def wait_barrier(barrier, out):
    out.put(barrier.wait(30))


def pool_map(pool, out):
    out.put(pool.map(square, range(5)))
    out.put(pool.apply_async(square, (7,)).get(30))


def square(x):
    return x * x


def edit_list(lst, out):
    lst.append("child")
    lst.extend([1, 2])
    lst[0] = "first"
    out.put((len(lst), lst[:]))


def edit_dict(d, out):
    d["child"] = os.getpid()
    out.put(sorted(d.keys()))


def _reporting(fn):
    """Put what ``fn`` returns, or the exception it raised, on its last argument (a queue).

    The parent then fails at once instead of waiting for a result that never comes.
    """

    @functools.wraps(fn)
    def run(*args):
        try:
            result = fn(*args)
        except Exception as e:  # noqa: BLE001 - reported to the parent
            result = ("raised", repr(e))
        args[-1].put(result)

    return run


@_reporting
def copy_and_clear_list(lst, out):
    copied = lst.copy()
    lst.clear()
    return (type(copied).__name__, copied, len(lst))


@_reporting
def merge_into_dict(d, out):
    d |= {"child": 2}
    d |= [("pairs", 3)]
    return (
        d | {"extra": 4},
        {"first": 0} | d,
        list(reversed(d)),
        d.fromkeys(["x", "y"], 5),
    )


@_reporting
def edit_set(s, out):
    s.add("child")
    s |= {"a", "b"}
    s -= {"parent"}
    s &= {"child", "a", "b", "c"}
    s ^= {"b", "d"}
    return (
        sorted(s),
        len(s),
        "a" in s,
        sorted(iter(s)),
        s | {"z"},
        {"z"} | s,
        s & {"a", "q"},
        s - {"a"},
        {"a", "q"} - s,
        s ^ {"a", "q"},
        s >= {"a"},
        {"a"} <= s,
        s < {"a", "child", "d", "q"},
        s.isdisjoint({"q"}),
        s.issubset({"a", "child", "d", "q"}),
        s.union(["q"]),
        type(s.copy()).__name__,
    )


def edit_value(v, out):
    v.value = v.value + 1
    out.put(v.get())


def edit_array(arr, out):
    arr[0] = 42
    out.put(list(arr))


def edit_namespace(ns, out):
    ns.y = ns.x * 2
    out.put(ns.y)


def nested_edit(d, out):
    """``d`` is a dict proxy of list proxies."""
    d["a"].append("from child")
    out.put({k: v[:] for k, v in d.items()})


def call_stored(d, out):
    """Call the lambda and use the instance stored in a dict proxy."""
    out.put((d["f"](10), d["obj"].describe(), d["closure"](1)))


def put_proxy_value(q, out):
    """Receive a proxy through a queue and use it."""
    proxy = q.get(timeout=30)
    proxy.append(os.getpid())
    out.put(len(proxy))


# -- load ---------------------------------------------------------------------


def append_many(lst, start, count, out):
    """Append ``count`` distinct integers from ``start`` to a list proxy."""
    append = lst.append
    for i in range(start, start + count):
        append(i)
    out.put(count)


# -- finalizers in the middle of a call -----------------------------------------

# Proxies that only this list holds: a Dropper empties it while it is pickled or
# unpickled, so that their finalizers (decref) run in the middle of a proxy call.
DROP = []


class Dropper:
    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        DROP.clear()
        return rebuild_dropper, (self.value,)


def rebuild_dropper(value):
    DROP.clear()
    return Dropper(value)


class CallsProxy:
    """Pickling it makes a call on the proxy ``target`` (a call within a call)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        self.target.append("nested")
        return int, (1,)


# -- faults -------------------------------------------------------------------


def call_until_error(lst, ready, out):
    """Use a proxy until it fails; report the type of the error."""
    ready.put("ready")
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            lst.append(1)
    except Exception as e:  # noqa: BLE001 - the error is what we report
        out.put(type(e).__name__)
    else:
        out.put("no error")


# -- a custom manager ---------------------------------------------------------


class Counter:
    """A stateful object served by a custom manager."""

    def __init__(self, start=0):
        self.value = start

    def increment(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def fail(self):
        raise ValueError("counter failed on purpose")

    def _private(self):
        return "private"

    def children(self):
        return [Counter(self.value), Counter(self.value + 1)]

    def iterate(self):
        return iter(range(self.value))


class CounterProxy(BaseProxy):
    _exposed_ = ("increment", "get", "fail")

    def increment(self, by=1):
        return self._callmethod("increment", (by,))

    def get(self):
        return self._callmethod("get")

    def fail(self):
        return self._callmethod("fail")


GeneratedProxy = MakeProxyType("GeneratedProxy", ("increment", "get", "iterate"))
GeneratedProxy._method_to_typeid_ = {"iterate": "Iter"}


def count_up(n):
    yield from range(n)


class CustomManager(BaseManager):
    pass


CustomManager.register("Counter", Counter, CounterProxy)
CustomManager.register("AutoCounter", Counter)
CustomManager.register("PrivateCounter", Counter, exposed=("get", "_private"))
CustomManager.register("Generated", Counter, GeneratedProxy)
CustomManager.register(
    "Parent", Counter, exposed=("get", "children"), method_to_typeid={"children": "list"}
)
CustomManager.register("list", list)
CustomManager.register("Iter", exposed=("__next__",), create_method=False)
CustomManager.register("counting", count_up)


def increment_counter(counter, out):
    out.put(counter.increment(5))


# -- a manager whose owner dies -------------------------------------------------

_KEPT = []


def keep(obj):
    """A manager initializer: keep ``obj`` alive in the server process."""
    _KEPT.append(obj)


def start_manager_then_die(method, writer, out):
    """Start a manager whose server holds ``writer``, then exit abruptly."""
    from multiprocess import get_context
    from multiprocess.managers import SyncManager

    m = SyncManager(ctx=get_context(method))
    m.start(keep, (writer,))
    writer.close()
    out.put(m.address)
    os._exit(0)  # no finalizers: nobody shuts the manager down


# -- remote managers ----------------------------------------------------------


def initializer(ns, value):
    ns.initialized = value


def failing_initializer():
    raise ZeroDivisionError("initializer failed on purpose")
