"""Managers: every SyncManager type from child processes, custom and remote managers, faults.

Every behaviour test runs under fork, spawn and forkserver (the ``ctx`` fixture).
Functions that children run live in ``_manager_helpers``.
"""

from __future__ import annotations

import copy
import json
import operator
import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import _manager_helpers as h
import pytest

import multiprocess
from multiprocess import managers, reduction
from multiprocess.connection import AuthenticationError, Client
from multiprocess.managers import (
    BaseManager,
    BaseProxy,
    RemoteError,
    RemoteTraceback,
    SharedMemoryManager,
    SyncManager,
)

pytestmark = pytest.mark.timeout(120)

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_GONE = (EOFError, ConnectionError)  # BrokenPipeError is a ConnectionError


# One running SyncManager per start method, shared by the tests that only use it.
_MANAGERS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _shutdown_shared_managers():
    yield
    while _MANAGERS:
        _MANAGERS.popitem()[1].shutdown()


@pytest.fixture
def manager(ctx):
    method = ctx.get_start_method()
    m = _MANAGERS.get(method)
    if m is None:
        m = _MANAGERS[method] = ctx.Manager()
    return m


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def join(p):
    p.join(60)
    assert p.exitcode == 0


def run_python(code, *args, timeout=60, **kwargs):
    """Run ``code`` in a fresh interpreter; return its stdout (it must succeed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- the module ------------------------------------------------------------------


def test_public_names():
    assert managers.__all__ == sorted(
        ["BaseManager", "SyncManager", "BaseProxy", "Token", "SharedMemoryManager"]
    )
    for name in ("Server", "RemoteError", "AutoProxy", "MakeProxyType", "Namespace",
                 "ListProxy", "DictProxy", "ValueProxy", "ArrayProxy", "NamespaceProxy",
                 "IteratorProxy", "AcquirerProxy", "ConditionProxy", "EventProxy",
                 "BarrierProxy", "PoolProxy", "BaseListProxy", "SetProxy", "State", "dispatch",
                 "convert_to_error", "public_methods", "all_methods", "listener_client",
                 "SharedMemoryServer", "_SharedMemoryTracker", "Value", "Array", "HAS_SHMEM",
                 "reduce_array", "rebuild_as_list", "RebuildProxy", "ProcessLocalSet"):  # fmt: skip
        assert hasattr(managers, name), name


def test_does_not_import_the_standard_library_package():
    out = run_python(
        """
        import sys
        import multiprocess.managers, multiprocess.pool
        m = multiprocess.Manager()
        m.list([1]).append(2)
        m.shutdown()
        print(sorted(n for n in sys.modules if n.split(".")[0] == "multiprocessing"))
        """
    )
    assert out.strip() == "[]"


def test_proxy_types_are_built_without_exec():
    proxy_type = managers.MakeProxyType("SomeProxy", ("a", "b"))
    assert issubclass(proxy_type, BaseProxy)
    assert proxy_type._exposed_ == ("a", "b")
    assert proxy_type.__module__ == __name__  # the caller's: pickles by reference
    assert managers.MakeProxyType("SomeProxy", ("a", "b")) is proxy_type
    assert proxy_type.a.__qualname__ == "SomeProxy.a"


# -- SyncManager types used from child processes -----------------------------------


def test_queue(ctx, manager):
    q = manager.Queue()
    out = ctx.Queue()
    q.put(20)
    q.put(22)
    p = start(ctx, h.use_queue, q, out)
    assert out.get(timeout=60) == "ok"
    join(p)
    assert q.get(timeout=10) == 42
    assert q.empty()


def test_joinable_queue(ctx, manager):
    q = manager.JoinableQueue()
    out = ctx.Queue()
    q.put("item")
    p = start(ctx, h.use_joinable_queue, q, out)
    assert out.get(timeout=60) == "item"
    q.join()  # the child called task_done()
    join(p)


def test_event(ctx, manager):
    ev = manager.Event()
    out = ctx.Queue()
    p = start(ctx, h.use_event, ev, out)
    ev.set()
    assert out.get(timeout=60) is True
    join(p)
    assert not ev.is_set()


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "BoundedSemaphore"])
def test_lock_held_by_a_child(ctx, manager, kind):
    lock = getattr(manager, kind)()
    locked, release = manager.Event(), manager.Event()
    out = ctx.Queue()
    p = start(ctx, h.hold_lock, lock, locked, release, out)
    assert locked.wait(60)
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.01) is False
    release.set()
    assert out.get(timeout=60) == "released"
    join(p)
    assert lock.acquire(timeout=30) is True
    lock.release()


def test_rlock_and_release_errors(ctx, manager):
    rlock = manager.RLock()
    out = ctx.Queue()
    p = start(ctx, h.use_rlock, rlock, out)
    assert out.get(timeout=60) == "ok"
    join(p)
    lock = manager.Lock()
    with pytest.raises(RuntimeError):
        lock.release()  # not locked: the server's threading.Lock says so
    bounded = manager.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        bounded.release()


def test_semaphore_value_from_child(ctx, manager):
    sem = manager.Semaphore(0)
    out = ctx.Queue()
    p = start(ctx, h.acquire_semaphore, sem, out)
    sem.release()
    assert out.get(timeout=60) is True
    join(p)


def test_condition(ctx, manager):
    cond = manager.Condition()
    ns = manager.Namespace(ready=False)
    out = ctx.Queue()
    p = start(ctx, h.wait_condition, cond, ns, out)
    with cond:
        ns.ready = True
        cond.notify_all()
    assert out.get(timeout=60) is True
    join(p)


def test_barrier(ctx, manager):
    barrier = manager.Barrier(2)
    assert barrier.parties == 2
    out = ctx.Queue()
    p = start(ctx, h.wait_barrier, barrier, out)
    mine = barrier.wait(60)
    assert {mine, out.get(timeout=60)} == {0, 1}
    join(p)
    assert barrier.n_waiting == 0 and not barrier.broken


def test_pool(ctx, manager):
    with manager.Pool(2) as pool:
        out = ctx.Queue()
        p = start(ctx, h.pool_map, pool, out)
        assert out.get(timeout=60) == [0, 1, 4, 9, 16]
        assert out.get(timeout=60) == 49
        join(p)
        # The lambda goes to the server, and from there to the pool's workers.
        assert pool.map(lambda x: x + 1, range(3)) == [1, 2, 3]
        assert pool.apply_async(pow, (2, 10)).get(30) == 1024
        assert sorted(pool.imap_unordered(h.square, range(4))) == [0, 1, 4, 9]


def test_list(ctx, manager):
    lst = manager.list(["a"])
    out = ctx.Queue()
    p = start(ctx, h.edit_list, lst, out)
    assert out.get(timeout=60) == (4, ["first", "child", 1, 2])
    join(p)
    assert lst[:] == ["first", "child", 1, 2]
    lst += [3]
    lst *= 2
    assert len(lst) == 10 and lst.count(3) == 2
    assert lst + [0] == ["first", "child", 1, 2, 3] * 2 + [0]
    assert list(iter(lst)) == lst[:]


def test_dict(ctx, manager):
    d = manager.dict(parent=1)
    out = ctx.Queue()
    p = start(ctx, h.edit_dict, d, out)
    assert out.get(timeout=60) == ["child", "parent"]
    join(p)
    assert d["parent"] == 1 and "child" in d
    assert d.keys() == ["parent", "child"]  # views come back as lists, as in the stdlib
    assert list(iter(d)) == ["parent", "child"]  # a proxy to the server's iterator
    assert d.copy() == {"parent": 1, "child": d["child"]}


# -- what CPython 3.14 adds to the list and dict proxies, and the set proxy ------------


def test_list_copy_and_clear(ctx, manager):
    lst = manager.list([1, [2], "three"])
    out = ctx.Queue()
    p = start(ctx, h.copy_and_clear_list, lst, out)
    assert out.get(timeout=60) == ("list", [1, [2], "three"], 0)
    join(p)
    assert lst[:] == [] and len(lst) == 0


def test_dict_union_reversed_and_fromkeys(ctx, manager):
    d = manager.dict(parent=1)
    out = ctx.Queue()
    p = start(ctx, h.merge_into_dict, d, out)
    union, runion, backwards, fromkeys = out.get(timeout=60)
    join(p)
    assert union == {"parent": 1, "child": 2, "pairs": 3, "extra": 4}
    assert list(runion) == ["first", "parent", "child", "pairs"]
    assert backwards == ["pairs", "child", "parent"]
    assert fromkeys == {"x": 5, "y": 5}
    assert d.copy() == {"parent": 1, "child": 2, "pairs": 3}  # | and fromkeys made copies
    assert type(d | {}) is dict and type({} | d) is dict
    same = d
    d |= {"parent": 10}
    assert d is same and d["parent"] == 10


def test_dict_union_with_bad_operands(ctx, manager):
    d = manager.dict(a=1)
    with pytest.raises(TypeError):
        d | [("b", 2)]  # as with a dict: | wants a mapping
    with pytest.raises(TypeError):
        d |= 5
    with pytest.raises(TypeError):
        d.fromkeys(5)
    assert d.copy() == {"a": 1}


def test_set(ctx, manager):
    s = manager.set({"parent"})
    assert type(s) is managers.SetProxy
    out = ctx.Queue()
    p = start(ctx, h.edit_set, s, out)
    got = out.get(timeout=60)
    join(p)
    assert got == (
        ["a", "child", "d"],
        3,
        True,
        ["a", "child", "d"],
        {"a", "child", "d", "z"},
        {"a", "child", "d", "z"},
        {"a"},
        {"child", "d"},
        {"q"},
        {"child", "d", "q"},
        True,
        True,
        True,
        True,
        True,
        {"a", "child", "d", "q"},
        "set",
    )
    assert sorted(s.copy()) == ["a", "child", "d"]
    other = manager.set({"from", "proxy"})
    s |= other
    s.discard("from")
    assert s.pop() in {"a", "child", "d", "proxy"}
    s.remove(next(iter(s)))
    assert len(s) == 2
    s.clear()
    assert len(s) == 0
    with pytest.raises(KeyError):
        s.remove("missing")
    with pytest.raises(KeyError):
        s.pop()
    assert managers.SetProxy[int].__origin__ is managers.SetProxy


def test_set_operators_with_bad_operands(ctx, manager):
    # A set answers TypeError to a list operand; so does the proxy, for the
    # in-place operators too, and the shared set is left as it was.
    s = manager.set({1, 2})
    for symbol, name in (("|", "or_"), ("&", "and_"), ("-", "sub"), ("^", "xor")):
        with pytest.raises(TypeError, match=re.escape(f"for {symbol}=: 'SetProxy' and 'list'")):
            getattr(operator, "i" + name.rstrip("_"))(s, [1, 5])
        with pytest.raises(TypeError, match="unsupported operand"):
            getattr(operator, name)(s, [1, 5])
    with pytest.raises(TypeError):
        s.add([])  # unhashable
    assert s.copy() == {1, 2}


def test_containers_are_registered_with_collections_abc(manager):
    import collections.abc

    lst, d, s = manager.list(), manager.dict(), manager.set()
    assert isinstance(lst, collections.abc.MutableSequence)
    assert isinstance(d, collections.abc.MutableMapping)
    assert isinstance(s, collections.abc.MutableSet)
    assert not isinstance(s, collections.abc.Mapping)
    # What the ABCs promise (CPython 3.14's suite checks the same for list and
    # dict).  The list proxy iterates with __getitem__, as the stdlib's does.
    promised = {
        lst: "__contains__ __delitem__ __getitem__ __iadd__ __len__ __reversed__ "
        "__setitem__ append clear count extend index insert pop remove reverse",
        d: "__contains__ __delitem__ __eq__ __getitem__ __iter__ __len__ __ne__ "
        "__setitem__ clear get items keys pop popitem setdefault update values",
        s: "__contains__ __iter__ __len__ __le__ __lt__ __ge__ __gt__ __and__ __or__ "
        "__sub__ __xor__ __rand__ __ror__ __rsub__ __rxor__ __iand__ __ior__ __isub__ "
        "__ixor__ add clear discard isdisjoint pop remove",
    }
    for obj, names in promised.items():
        missing = [name for name in names.split() if not callable(getattr(obj, name, None))]
        assert missing == [], (type(obj).__name__, missing)


def test_value_and_array(ctx, manager):
    v = manager.Value("i", 41)
    arr = manager.Array("i", [0, 1, 2])
    out = ctx.Queue()
    p = start(ctx, h.edit_value, v, out)
    assert out.get(timeout=60) == 42
    join(p)
    assert v.value == 42
    p = start(ctx, h.edit_array, arr, out)
    assert out.get(timeout=60) == [42, 1, 2]
    join(p)
    assert list(arr) == [42, 1, 2] and len(arr) == 3


def test_namespace(ctx, manager):
    ns = manager.Namespace(x=21)
    ns._local = "stays in the proxy"
    out = ctx.Queue()
    p = start(ctx, h.edit_namespace, ns, out)
    assert out.get(timeout=60) == 42
    join(p)
    assert ns.y == 42
    assert str(ns) == "Namespace(x=21, y=42)"
    del ns.y
    assert not hasattr(ns, "y")


# -- nesting, serialization, pickling of proxies -------------------------------------


def test_nested_proxies(ctx, manager):
    d = manager.dict()
    d["a"] = manager.list([1])
    d["b"] = manager.list()
    out = ctx.Queue()
    p = start(ctx, h.nested_edit, d, out)
    assert out.get(timeout=60) == {"a": [1, "from child"], "b": []}
    join(p)
    assert d["a"][:] == [1, "from child"]
    inner = d["b"]
    inner.append("x")
    assert d["b"][:] == ["x"]
    outer = manager.list([manager.dict(k=manager.list([7]))])
    assert outer[0]["k"][0] == 7


def test_lambdas_and_local_classes_in_a_dict(ctx, manager):
    base = 100

    class Local:  # defined in a function: pickle cannot take it by reference
        def __init__(self, name):
            self.name = name

        def describe(self):
            return f"{self.name}+{base}"

    d = manager.dict()
    d["f"] = lambda x: x * 2 + base
    d["obj"] = Local("local")

    def make_adder(k):
        return lambda x: x + k

    d["closure"] = make_adder(5)
    out = ctx.Queue()
    p = start(ctx, h.call_stored, d, out)
    assert out.get(timeout=60) == (120, "local+100", 6)
    join(p)
    assert d["f"](1) == 102


def test_main_module_objects_in_a_dict(start_method):
    script = os.path.join(HERE, "_manager_main_script.py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, script, start_method],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "lambda": 12,
        "norm2": 25,
        "scaled": 225,
        "made": 5,
        "nested": 13,
        "exitcode": 0,
        "from_child": "ababab",
        "point_back": 25,
    }


def test_proxy_sent_through_a_queue(ctx, manager):
    lst = manager.list()
    q, out = ctx.Queue(), ctx.Queue()
    p = start(ctx, h.put_proxy_value, q, out)
    q.put(lst)
    assert out.get(timeout=60) == 1
    join(p)
    assert lst[0] == p.pid


def test_proxy_pickles_without_authkey():
    with SyncManager() as m:
        lst = m.list([1, 2])
        data = pickle.dumps(lst)
        assert m._authkey not in data
        again = pickle.loads(data)
        assert again[:] == [1, 2] and again._token.id == lst._token.id


def test_repr_str_getvalue_deepcopy(manager):
    lst = manager.list([3, 1, 2])
    assert re.fullmatch(r"<ListProxy object, typeid 'list' at 0x[0-9a-f]+>", repr(lst))
    assert str(lst) == "[3, 1, 2]"
    assert lst._getvalue() == [3, 1, 2]
    assert copy.deepcopy(lst) == [3, 1, 2]
    auto = manager.Queue()
    assert re.fullmatch(r"<AutoProxy\[Queue\] object, typeid 'Queue' at 0x[0-9a-f]+>", repr(auto))
    assert managers.DictProxy[str, int].__origin__ is managers.DictProxy


def test_reference_counting(ctx, manager):
    before = manager._number_of_objects()
    lst = manager.list()
    d = manager.dict()
    assert manager._number_of_objects() == before + 2
    out = ctx.Queue()
    p = start(ctx, h.edit_list, lst, out)
    out.get(timeout=60)
    join(p)  # the child gave its reference back when it exited
    assert manager._number_of_objects() == before + 2
    del lst, d
    assert manager._number_of_objects() == before


def test_finalizer_in_the_middle_of_a_call(manager):
    lst = manager.list()
    before = manager._number_of_objects()
    h.DROP.append(manager.dict())
    assert manager._number_of_objects() == before + 1
    # Pickling the argument drops the dict proxy: its decref runs during the
    # call, on a connection of its own, and the call goes on undisturbed.
    lst.append(h.Dropper(5))
    assert manager._number_of_objects() == before
    h.DROP.append(manager.dict())
    assert lst[0].value == 5  # unpickling the answer drops the other one
    assert manager._number_of_objects() == before
    assert len(lst) == 1
    other = manager.list()
    lst.append(h.CallsProxy(other))  # a call while this call's request is pickled
    assert other[:] == ["nested"] and lst[1] == 1


def test_threads_have_their_own_connections(manager):
    lst = manager.list()
    errors = []

    def work(n):
        try:
            for i in range(200):
                lst.append((n, i))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(lst[:]) == sorted((n, i) for n in range(4) for i in range(200))


# -- custom managers -------------------------------------------------------------------


def test_custom_manager(ctx):
    with h.CustomManager(ctx=ctx) as m:
        counter = m.Counter(1)
        assert isinstance(counter, h.CounterProxy)
        assert counter.increment() == 2
        out = ctx.Queue()
        p = start(ctx, h.increment_counter, counter, out)
        assert out.get(timeout=60) == 7
        join(p)
        assert counter.get() == 7

        auto = m.AutoCounter(3)
        assert {"increment", "get", "fail", "children", "iterate"} <= set(auto._exposed_)
        assert not hasattr(auto, "_private")
        assert auto.increment(2) == 5

        private = m.PrivateCounter(4)
        assert private._private() == "private" and private.get() == 4
        assert not hasattr(private, "increment")

        generated = m.Generated(3)
        assert isinstance(generated, h.GeneratedProxy)
        assert generated.increment() == 4
        it = generated.iterate()  # method_to_typeid: the iterator stays in the server
        assert isinstance(it, BaseProxy) and it._token.typeid == "Iter"
        assert [next(it) for _ in range(4)] == [0, 1, 2, 3]
        with pytest.raises(StopIteration):
            next(it)

        children = m.Parent(10).children()
        assert children._token.typeid == "list"
        assert [c.value for c in children._getvalue()] == [10, 11]

        gen = m.counting(3)
        assert gen.send(None) == 0


def test_method_error_carries_server_traceback(ctx):
    with h.CustomManager(ctx=ctx) as m:
        counter = m.Counter()
        with pytest.raises(ValueError, match="counter failed on purpose") as info:
            counter.fail()
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "in fail" in str(cause) and "_manager_helpers.py" in str(cause)
        assert counter.get() == 0  # the connection is still in step


def test_method_not_exposed(ctx):
    with h.CustomManager(ctx=ctx) as m:
        counter = m.Counter()
        with pytest.raises(RemoteError) as info:
            counter._callmethod("_private")
        message = str(info.value)
        assert "AttributeError" in message
        assert re.search(r"method '_private' of <class '_manager_helpers.Counter'> object "
                         r"is not in exposed=", message)  # fmt: skip
        assert counter.increment() == 1


def test_register_keeps_registries_apart():
    class A(BaseManager):
        pass

    class B(A):
        pass

    A.register("x", list)
    B.register("y", dict)
    assert "x" in A._registry and "y" not in A._registry
    assert {"x", "y"} <= set(B._registry)
    assert "x" not in BaseManager._registry
    with pytest.raises(TypeError):
        B.register("z", list, method_to_typeid={"a": 1})


# -- manager life cycle -------------------------------------------------------------------


def test_life_cycle_errors(ctx):
    m = SyncManager(ctx=ctx)
    m.shutdown()  # not started: nothing to do
    with pytest.raises(multiprocess.ProcessError, match="not started"):
        m.list()
    m.start()
    with pytest.raises(multiprocess.ProcessError, match="Already started"):
        m.start()
    with pytest.raises(multiprocess.ProcessError, match="Already started"):
        m.get_server()
    process = m._process
    m.shutdown()
    m.shutdown()
    assert process.exitcode == 0
    with pytest.raises(multiprocess.ProcessError, match="shut down"):
        m.start()
    with pytest.raises(multiprocess.ProcessError, match="shut down"), m:
        pass


def test_package_manager_function():
    with multiprocess.Manager() as m:
        assert isinstance(m, SyncManager)
        assert m.list(range(3))[:] == [0, 1, 2]


def test_initializer(ctx, manager):
    ns = manager.Namespace()
    m = SyncManager(ctx=ctx)
    with pytest.raises(TypeError):
        m.start(1)
    m.start(h.initializer, (ns, 5))
    try:
        assert ns.initialized == 5
    finally:
        m.shutdown()
        m.join()


def test_failing_initializer(ctx):
    m = SyncManager(ctx=ctx)
    with pytest.raises(ZeroDivisionError, match="on purpose") as info:
        m.start(h.failing_initializer)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "failing_initializer" in str(info.value.__cause__)
    m._process.join(30)
    assert m._process.exitcode == 1


@pytest.mark.parametrize("serializer", ["dill", "cloudpickle", "pickle"])
def test_serializer_names(ctx, serializer):
    if serializer == "cloudpickle":
        pytest.importorskip("cloudpickle")
    with SyncManager(serializer=serializer, ctx=ctx) as m:
        d = m.dict()
        d["f"] = lambda x: x + 1
        assert d["f"](1) == 2
        assert d._serializer == serializer


def test_unknown_serializer():
    with pytest.raises(ValueError, match="unknown manager serializer"):
        SyncManager(serializer="json")


def test_xmlrpclib_serializer(ctx):
    with h.CustomManager(serializer="xmlrpclib", ctx=ctx) as m:
        lst = m.list()  # an AutoProxy here: public methods only
        lst.append(("text", 1, 2.5, None, True, b"bytes"))
        # Tuples come back as lists.
        assert lst.copy() == [["text", 1, 2.5, None, True, b"bytes"]]
        with pytest.raises(TypeError):
            lst.append(len)  # xmlrpc cannot marshal a function
        assert lst.count(1) == 0 and len(lst.copy()) == 1


# -- SharedMemoryManager -----------------------------------------------------------------


def test_shared_memory_manager(ctx):
    from multiprocess import shared_memory

    smm = SharedMemoryManager(ctx=ctx)
    with pytest.raises(ValueError, match="not started"):
        smm.SharedMemory(16)
    with smm:
        sl = smm.ShareableList(range(5))
        shm = smm.SharedMemory(64)
        shm.buf[:3] = b"abc"
        names = (sl.shm.name, shm.name)
        again = shared_memory.SharedMemory(shm.name)
        assert bytes(again.buf[:3]) == b"abc"
        again.close()
        assert list(shared_memory.ShareableList(name=sl.shm.name)) == [0, 1, 2, 3, 4]
        sl.shm.close()
        shm.close()
    for name in names:  # the server unlinked them at shutdown
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name)


# -- faults -----------------------------------------------------------------------------


def test_server_killed_gives_clear_errors(ctx):
    m = SyncManager(ctx=ctx)
    m.start()
    lst = m.list([1])
    barrier = m.Barrier(2)
    results = []

    def blocked_call():
        try:
            barrier.wait()
        except Exception as e:  # noqa: BLE001 - what we check
            results.append(e)

    t = threading.Thread(target=blocked_call)
    t.start()
    deadline = time.monotonic() + 30
    while barrier.n_waiting != 1:  # the call is now waiting in the server
        assert time.monotonic() < deadline

    out, ready = ctx.Queue(), ctx.Queue()
    p = start(ctx, h.call_until_error, lst, ready, out)
    assert ready.get(timeout=60) == "ready"

    m._process.kill()
    m._process.join(30)

    t.join(30)
    assert not t.is_alive()
    assert len(results) == 1 and isinstance(results[0], SERVER_GONE), results
    with pytest.raises(SERVER_GONE):
        lst.append(2)
    with pytest.raises(SERVER_GONE):  # reconnecting fails at once too
        lst.append(3)
    with pytest.raises(SERVER_GONE):
        m.list()
    assert out.get(timeout=60) in {"EOFError", "BrokenPipeError", "ConnectionResetError",
                                   "ConnectionRefusedError"}  # fmt: skip
    join(p)
    m.shutdown()  # the server is already dead: returns at once


def test_server_stops_when_its_owner_dies(ctx):
    reader, writer = ctx.Pipe(duplex=False)
    out = ctx.SimpleQueue()  # put() writes at once: nothing is lost at os._exit
    p = ctx.Process(target=h.start_manager_then_die, args=(ctx.get_start_method(), writer, out))
    p.start()
    writer.close()
    address = out.get()
    join(p)
    # The server process held the only other copy of the writer: EOF means it exited.
    assert reader.poll(60)
    with pytest.raises(EOFError):
        reader.recv()
    with pytest.raises(ConnectionRefusedError, match="no manager is listening"):
        SyncManager(address=address).connect()


class _Touch:
    """Unpickling this creates a file: proof that a peer's bytes were unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _frame(payload):
    return struct.pack("!i", len(payload)) + payload


def test_wrong_authkey(ctx, tmp_path):
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_Touch(str(marker)))
    assert len(evil) < 256
    m = SyncManager(address=("127.0.0.1", 0), authkey=b"right key", ctx=ctx)
    m.start()
    try:
        lst = m.list()

        # A peer that knows nothing: sends a pickle instead of answering.
        with socket.create_connection(m.address) as s:
            s.sendall(_frame(evil))
            s.settimeout(30)
            reply = b""
            while True:  # the challenge, then FAILURE, then the server hangs up
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                reply += chunk
            assert b"#FAILURE#" in reply
        # A silent peer holds a connection open meanwhile.
        silent = socket.create_connection(m.address)

        with pytest.raises(AuthenticationError):
            Client(m.address, authkey=b"wrong key")
        wrong = SyncManager(address=m.address, authkey=b"wrong key")
        with pytest.raises(AuthenticationError):
            wrong.connect()

        good = SyncManager(address=m.address, authkey=b"right key")
        good.connect()
        other = good.list([1, 2])
        other.append(3)
        lst.append("still served")
        assert other[:] == [1, 2, 3] and lst[:] == ["still served"]
        silent.close()
        assert not marker.exists()
        assert m._process.is_alive()
    finally:
        m.shutdown()


def test_bad_requests_from_an_authenticated_client(manager):
    lst = manager.list([1])
    authkey = bytes(multiprocess.current_process().authkey)
    with Client(manager.address, authkey=authkey) as c:
        managers.dispatch(c, None, "accept_connection", ("raw",))
        c.send_bytes(b"not a pickle")
        kind, text = c.recv()
        assert kind == "#TRACEBACK" and "UnpicklingError" in text
        c.send(("no-such-id", "append", (1,), {}))
        kind, text = c.recv()
        assert kind == "#TRACEBACK" and "no shared object with id 'no-such-id'" in text
        c.send((lst._id, "append"))  # malformed request
        kind, text = c.recv()
        assert kind == "#TRACEBACK" and "ValueError" in text
        os.write(c.fileno(), struct.pack("!i", -5))  # a length no message has: it hangs up
        assert c.poll(30)
        with pytest.raises(EOFError):
            c.recv()
    with Client(manager.address, authkey=authkey) as c:
        pytest.raises(RemoteError, managers.dispatch, c, None, "id_to_obj").match(
            "'id_to_obj' unrecognized"
        )
    assert lst[:] == [1]  # the others are served as before
    assert "refcount=" in manager._debug_info()


def test_large_messages_both_ways(manager):
    lst = manager.list()
    big = os.urandom(3 * 2**20) + b"end"
    lst.append(big)
    assert lst[0] == big
    assert lst[:] == [big]
    lst.append(1)
    assert len(lst) == 2  # the connection is still in step


def test_request_framing(manager):
    lst = manager.list()
    authkey = bytes(multiprocess.current_process().authkey)
    with Client(manager.address, authkey=authkey) as c:
        managers.dispatch(c, None, "accept_connection", ("raw",))
        fd = c.fileno()
        # Two requests in one write (a client that sends ahead): both answered, in order.
        append = reduction.dumps((lst._id, "append", (1,), {}))
        length = reduction.dumps((lst._id, "__len__", (), {}))
        os.write(fd, _frame(append) + _frame(length))
        assert c.recv() == ("#RETURN", None)
        assert c.recv() == ("#RETURN", 1)
        # The long header form: -1, then the length in 8 bytes.
        getitem = reduction.dumps((lst._id, "__getitem__", (0,), {}))
        os.write(fd, struct.pack("!iQ", -1, len(getitem)) + getitem)
        assert c.recv() == ("#RETURN", 1)
        # A message cut short by the end of the stream: the server hangs up.
        os.write(fd, struct.pack("!i", 100) + b"short")
        with socket.socket(fileno=os.dup(fd)) as s:
            s.shutdown(socket.SHUT_WR)
        assert c.poll(30)
        with pytest.raises(EOFError):
            c.recv()
    assert lst[:] == [1]


def test_load_four_clients(ctx, manager):
    clients, calls = 4, 10_000
    lst = manager.list()
    out = ctx.Queue()
    procs = [start(ctx, h.append_many, lst, n * calls, calls, out) for n in range(clients)]
    assert [out.get(timeout=110) for _ in procs] == [calls] * clients
    for p in procs:
        join(p)
    values = lst._getvalue()
    assert len(values) == clients * calls
    assert sorted(values) == list(range(clients * calls))


# -- the standard library's managers on the other end ---------------------------------


def test_interoperates_with_the_standard_library():
    import multiprocessing.managers as std_managers

    # Our client, the standard library's server.
    std_server = std_managers.SyncManager(authkey=b"shared key")
    std_server.start()
    try:

        class OurClient(BaseManager):
            pass

        OurClient.register("list")
        ours = OurClient(address=std_server.address, authkey=b"shared key")
        ours.connect()
        lst = ours.list([1, 2])
        lst.append((3, "three"))
        assert lst._getvalue() == [1, 2, (3, "three")]
        assert std_server._number_of_objects() == 1
        del lst
        assert std_server._number_of_objects() == 0
    finally:
        std_server.shutdown()

    # The standard library's client, our server.
    with SyncManager(address=("127.0.0.1", 0), authkey=b"shared key") as our_server:

        class StdClient(std_managers.BaseManager):
            pass

        StdClient.register("dict")
        theirs = StdClient(address=our_server.address, authkey=b"shared key")
        theirs.connect()
        d = theirs.dict(a=1)
        d.update(b=[2])
        assert d._getvalue() == {"a": 1, "b": [2]}
        assert our_server._number_of_objects() == 1
        del d
        assert our_server._number_of_objects() == 0


# -- remote managers between separately started interpreters ----------------------------

# The example of the standard library's documentation ("Using a remote manager"),
# as written, but on a port the test chooses.
DOCS_SERVER = """
from multiprocess.managers import BaseManager
from queue import Queue
import sys
queue = Queue()
class QueueManager(BaseManager): pass
QueueManager.register('get_queue', callable=lambda:queue)
m = QueueManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'abracadabra')
s = m.get_server()
print(s.address[1], flush=True)
s.serve_forever()
"""

DOCS_PUTTER = """
from multiprocess.managers import BaseManager
import sys
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
m = QueueManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'abracadabra')
m.connect()
queue = m.get_queue()
queue.put('hello')
queue.put(lambda x: x * 7)  # dill: even a lambda travels
"""

DOCS_GETTER = """
from multiprocess.managers import BaseManager
import sys
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
m = QueueManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'abracadabra')
m.connect()
queue = m.get_queue()
print(queue.get(timeout=30))
print(queue.get(timeout=30)(6))
"""


def _serve(code, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = server.stdout.readline()
    if not line:
        server.kill()
        raise AssertionError(server.stderr.read())
    return server, line.strip()


def test_remote_manager_docs_example():
    server, port = _serve(DOCS_SERVER, "0")
    try:
        run_python(DOCS_PUTTER, port)
        assert run_python(DOCS_GETTER, port).split() == ["hello", "42"]
        # A client with the wrong key is refused, and the server goes on.
        wrong = DOCS_PUTTER.replace("abracadabra", "hocus pocus")
        out = subprocess.run(
            [sys.executable, "-c", wrong, port],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0 and "AuthenticationError" in out.stderr
        run_python(DOCS_PUTTER, port)
        assert run_python(DOCS_GETTER, port).split() == ["hello", "42"]
    finally:
        server.send_signal(signal.SIGINT)  # serve_forever() exits on KeyboardInterrupt
        try:
            assert server.wait(30) == 0
        finally:
            server.kill()
            server.stdout.close()
            server.stderr.close()


# The server is started with start() under the test's start method; its registry
# holds a lambda, which only a dill-based manager can send to a spawned server.
STARTED_SERVER = """
import sys
import multiprocess as mp
from multiprocess.managers import BaseManager

class QueueManager(BaseManager): pass

if __name__ == '__main__':
    import queue
    shared = {'queue': queue.Queue()}
    QueueManager.register('get_queue', callable=lambda: shared['queue'])
    QueueManager.register('get_list', callable=lambda: [1, 2, 3])
    m = QueueManager(address=('127.0.0.1', 0), authkey=b'secret',
                     ctx=mp.get_context(sys.argv[1]))
    m.start()
    print(m.address[1], flush=True)
    sys.stdin.read()   # until the test closes our stdin
    m.shutdown()
"""

STARTED_CLIENT = """
import sys
from multiprocess.managers import BaseManager
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
QueueManager.register('get_list')
m = QueueManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'secret')
m.connect()
q = m.get_queue()
q.put(sys.argv[2])
lst = m.get_list()
lst.append(4)
print(lst.copy())
"""


def test_remote_manager_started_under_each_method(start_method):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STARTED_SERVER), start_method],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = server.stdout.readline().strip()
        assert port, server.stderr.read()
        assert run_python(STARTED_CLIENT, port, "one").strip() == "[1, 2, 3, 4]"
        assert run_python(STARTED_CLIENT, port, "two").strip() == "[1, 2, 3, 4]"
        getter = (
            "import sys\n"
            + STARTED_CLIENT.split("q = m.get_queue()")[0]
            + "q = m.get_queue()\nprint(q.get(timeout=30), q.get(timeout=30), q.empty())\n"
        )
        assert run_python(getter, port).split() == ["one", "two", "True"]
        server.stdin.close()
        assert server.wait(60) == 0, server.stderr.read()
    finally:
        server.kill()
        server.stdout.close()
        server.stderr.close()
