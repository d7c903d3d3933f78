"""multiprocess.reduction: the hybrid pickle/dill serializer, serializer choice,
out-of-band buffers, errors, and POSIX handle passing."""

from __future__ import annotations

import array
import functools
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import types
from collections import OrderedDict

import _reduction_helpers as h
import dill
import pytest

from multiprocess import _spawning, reduction
from multiprocess.reduction import SerializationError, dumps, dumps_oob, loads

np = pytest.importorskip("numpy")

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def dill_copy(obj):
    return dill.loads(dill.dumps(obj, recurse=True))


def our_copy(obj, **kwargs):
    return loads(dumps(obj, **kwargs))


def _advanced_counter():
    counter = h.make_counter()
    counter()
    counter()
    return counter


def _acc_instance():
    ns = h.main_namespace()
    acc = ns["Acc"](5)
    acc.add(1)
    return acc


def _class_instances_and_function():
    ns = h.main_namespace()
    return ns["is_acc"], [ns["Acc"](1), ns["Acc"](2)], ns["Acc"]


def _two_functions_sharing_a_global():
    ns = h.main_namespace()
    return ns["push"], ns["push_too"]


def _closure_over_array():
    arr = np.arange(10)
    return lambda: arr.sum()


def _nested():
    ns = h.main_namespace()
    return {
        "fs": [lambda x: x + 1, h.make_adder(2), functools.partial(ns["scale"], 2)],
        "t": (ns["scale"], {"p": h.Point(1, 2), "acc": ns["Acc"](0)}),
        "plain": [1, 2.5, "s", b"b", None, (True, frozenset({1}))],
    }


def _probe_nested(d):
    fs = d["fs"]
    scale, inner = d["t"]
    return (
        fs[0](1),
        fs[1](1),
        fs[2](),
        scale(2),
        inner["p"],
        inner["acc"].add(1),
        d["plain"],
    )


# (make, probe): the object is made afresh for each serializer; the probe turns
# the copy into something comparable (by calling functions, reading attributes).
CORPUS = {
    "module function": (lambda: h.add, lambda f: f(2, 3)),
    "builtin function": (lambda: len, lambda f: f([1, 2])),
    "lambda": (lambda: lambda x: x * 2, lambda f: f(21)),
    "lambda with defaults": (
        lambda: lambda x, y=2, *, z=3: x + y + z,
        lambda f: (f(1), f(1, z=10), f.__defaults__, f.__kwdefaults__),
    ),
    "closure": (lambda: h.make_adder(10), lambda f: f(5)),
    "closure with nonlocal state": (_advanced_counter, lambda f: [f(), f()]),
    "recursive lambda via a global": (lambda: h.main_namespace()["fib"], lambda f: f(12)),
    "__main__ function with a global": (lambda: h.main_namespace()["scale"], lambda f: f(4)),
    "__main__ class": (
        lambda: h.main_namespace()["Acc"],
        lambda c: (c.__name__, c.__qualname__, c.kind, c(1).add(2)),
    ),
    "__main__ instance": (
        _acc_instance,
        lambda o: (type(o).__name__, o.total, o.add(1), o.kind),
    ),
    "__main__ function and instances share the class": (
        lambda: (h.main_namespace()["is_acc"], [h.main_namespace()["Acc"](1)]),
        lambda t: [t[0](x) for x in t[1]],
    ),
    "__main__ class, its instances and a function": (
        _class_instances_and_function,
        lambda t: ([t[0](x) for x in t[1]], [type(x) is t[2] for x in t[1]]),
    ),
    "two __main__ functions share a global": (
        _two_functions_sharing_a_global,
        lambda t: (t[0](1), t[1](2)),
    ),
    "partial of a __main__ function": (
        lambda: functools.partial(h.main_namespace()["scale"], 5),
        lambda p: (p(), p.args),
    ),
    "partial of a lambda with keywords": (
        lambda: functools.partial(lambda a, b=0: a - b, b=1),
        lambda p: (p(10), p.keywords),
    ),
    "partial held by a __main__ global": (
        lambda: h.main_namespace()["scale_partial"],
        lambda p: p(3),
    ),
    "nested containers of all of these": (_nested, _probe_nested),
    "importable class and instance": (
        lambda: (h.Point, h.Point(3, 4)),
        lambda t: (t[0] is h.Point, t[1], t[1].norm2()),
    ),
    "classmethod": (lambda: h.Point.origin, lambda f: f()),
    "bound method": (lambda: h.Point(3, 4).norm2, lambda f: f()),
    "bound method of a __main__ instance": (
        lambda: h.main_namespace()["Acc"](1).add,
        lambda f: (f(1), f(1)),
    ),
    "function bound by hand": (
        lambda: types.MethodType(lambda self: self.norm2() + 1, h.Point(1, 2)),
        lambda f: f(),
    ),
    "lru_cache function": (lambda: h.cached_square, lambda f: f(4)),
    "lru_cache over a lambda": (lambda: functools.lru_cache()(lambda x: x + 1), lambda f: f(1)),
    "numpy array": (
        lambda: np.arange(12, dtype="i8").reshape(3, 4),
        lambda a: (a.tolist(), a.dtype.str, a.flags.c_contiguous),
    ),
    "numpy fortran array": (
        lambda: np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        lambda a: (a.tolist(), a.flags.f_contiguous),
    ),
    "numpy structured array": (
        lambda: np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        lambda a: (a.tolist(), a.dtype.names),
    ),
    "numpy object array holding a lambda": (
        lambda: np.array([lambda: 7, 2], dtype=object),
        lambda a: (a[0](), a[1]),
    ),
    "closure over a numpy array": (_closure_over_array, lambda f: int(f())),
    "module": (lambda: __import__("math"), lambda m: m.sqrt(16)),
    "modules among plain data": (
        lambda: [1, os.path, {"json": json}],
        lambda t: (t[0], t[1].join("a", "b"), t[2]["json"].dumps([1])),
    ),
    "bytes and bytearray": (
        lambda: (b"abc", bytearray(b"xyz")),
        lambda t: (t[0], type(t[1]).__name__, bytes(t[1])),
    ),
    "lock": (lambda: threading.Lock(), lambda lock: (type(lock).__name__, lock.acquire(False))),
    "dict views": (
        lambda: ({"a": 1}.keys(), OrderedDict(b=2).items()),
        lambda t: (list(t[0]), list(t[1])),
    ),
    "mappingproxy": (lambda: types.MappingProxyType({"a": 1}), lambda m: dict(m)),
    "property of a lambda": (lambda: property(lambda self: 42), lambda p: p.fget(None)),
    "code object": (
        lambda: h.add.__code__,
        lambda c: types.FunctionType(c, {})(1, 2),
    ),
}


@pytest.mark.filterwarnings("ignore::dill.PicklingWarning")
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_matches_dill(name):
    make, probe = CORPUS[name]
    expected = probe(dill_copy(make()))
    assert probe(our_copy(make())) == expected
    # The stream is an ordinary pickle.
    assert probe(pickle.loads(dumps(make()))) == expected


def test_corpus_expected_values():
    # The corpus compares against dill; pin a few answers too.
    assert our_copy(_advanced_counter())() == 3
    assert our_copy(h.main_namespace()["fib"])(12) == 144
    is_acc, accs, acc_class = our_copy(_class_instances_and_function())
    assert is_acc(accs[0]) and type(accs[1]) is acc_class
    push, push_too = our_copy(_two_functions_sharing_a_global())
    assert (push(1), push_too(2)) == ([1], [1, 2])  # one list, as with dill


def test_recursive_nested_function():
    # dill's recurse=True overflows on a closure that holds itself; such a
    # function is pickled like dill's default (recurse=False) does instead.
    fact = h.make_factorial()
    with pytest.raises(RecursionError):
        dill_copy(fact)
    assert our_copy(fact)(6) == dill.loads(dill.dumps(fact))(6) == 720
    ns = h.main_namespace()
    exec(  # noqa: S102 - a function as if defined in __main__
        "def make():\n"
        "    def fact(n):\n"
        "        return 1 if n <= 1 else n * fact(n - 1) * FACTOR // FACTOR\n"
        "    return fact\n",
        ns,
    )
    fact, scale = our_copy([ns["make"](), ns["scale"]])  # and the payload goes on
    assert (fact(5), scale(2)) == (120, 6)


def test_main_objects_go_by_value():
    ns = h.main_namespace()
    data = dumps(ns["scale"])
    # The namespace is not a module anyone can import: by reference would fail.
    assert b"_load_dill" in data
    assert loads(data)(2) == 6


def test_array_shared_by_payload_and_function_globals_stays_one_object():
    ns = {"__name__": "__main__"}
    exec("def get():\n    return ARR\n", ns)  # noqa: S102 - as if defined in __main__
    ns["ARR"] = np.arange(100_000.0)
    arr, get = our_copy((ns["ARR"], ns["get"]))
    assert get() is arr
    data, buffers = dumps_oob((ns["ARR"], ns["get"]), min_size=1)
    assert len(buffers) == 1  # sent once, out of band
    arr, get = loads(data, buffers=buffers)
    assert get() is arr


@pytest.fixture
def frequent_thread_switches():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_threads_pickling_functions_at_once():
    # dill finds a function's globals by disassembling it into a swapped
    # sys.stdout; unguarded, threads read each other's output and functions
    # lose their globals.
    ns = {"__name__": "__main__"}
    exec(  # noqa: S102 - functions as if defined in __main__
        "".join(f"G{i} = {i}\ndef f{i}(x):\n    return x + G{i}\n" for i in range(8)), ns
    )
    stdout = sys.stdout
    results = {i: [] for i in range(8)}

    def work(i):
        for _ in range(20):
            results[i].append(loads(dumps(ns[f"f{i}"]))(100))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sys.stdout is stdout
    assert results == {i: [100 + i] * 20 for i in range(8)}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads
def test_fork_while_another_thread_pickles_with_dill():
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            dumps(lambda: 1)

    stdout = sys.stdout
    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(5):
            pid = os.fork()
            if pid == 0:  # the child must be able to use dill at once
                ok = False
                try:
                    ok = loads(dumps(lambda x: x + 1))(1) == 2 and sys.stdout is stdout
                finally:
                    os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        thread.join()


# -- the fast path ----------------------------------------------------------

PLAIN = {
    "ints": list(range(10_000)),
    "tuples": [(i, str(i), float(i)) for i in range(1000)],
    "dict": {str(i): i for i in range(1000)},
    "nested": {"a": [1, 2, (3, 4.5)], "b": {"c": None, "d": b"x" * 100, "e": {1, 2}}},
    "big bytes": b"\0" * (1 << 17),
    "numpy": np.arange(1000.0),
    "importable instances": [h.Point(i, i) for i in range(100)],
    "importable function and class": (h.add, h.Point, len, os.path.join),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_data_is_pickled_exactly_like_pickle(name):
    obj = PLAIN[name]
    assert dumps(obj) == pickle.dumps(obj, 5)
    assert dumps(obj, serializer="pickle") == pickle.dumps(obj, 5)


def test_plain_data_never_touches_dill(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dill was called for plain data")

    for name in ("Pickler", "Unpickler", "dumps", "loads", "dump", "load"):
        monkeypatch.setattr(dill, name, refuse)
    for obj in PLAIN.values():
        data = dumps(obj)
        copy = loads(data)
        if isinstance(obj, np.ndarray):
            assert (copy == obj).all()
        else:
            assert copy == obj


SMALL_MESSAGES = [
    None,
    True,
    12,
    2**100,
    1.5,
    "text",
    b"raw",
    (1, "x"),
    [1.0, None, b""],
    {"a": 1, 2: "b"},
    (),
    tuple(range(reduction._PLAIN_CONTAINER_MAX)),
    ((1, "x"), {}),  # a call's arguments and keyword arguments
    ((), {"key": b"v"}),
    (1, [2.0, None]),
    [(1,), (2,)],
    ((1,) * 31, (2,) * 31),  # 64 items in all
]


@pytest.mark.parametrize("obj", SMALL_MESSAGES, ids=repr)
@pytest.mark.parametrize("serializer", ["dill", "pickle"])
def test_small_messages_take_the_shortcut_with_the_same_bytes(obj, serializer):
    assert reduction._is_plain(obj)
    expected = pickle.dumps(obj, 5)
    assert dumps(obj, serializer=serializer) == expected
    assert reduction.dumps_oob(obj, serializer=serializer) == (expected, [])
    assert dumps(obj, 4, serializer=serializer) == pickle.dumps(obj, 4)
    assert loads(expected) == obj


class _Tuple(tuple):
    pass


@pytest.mark.parametrize(
    "obj",
    [
        _Tuple((1, 2)),  # a subclass: its reducer may be registered
        (1, [[2]]),  # three levels
        ((1, {"f": len}), {}),
        ([0] * 40, [0] * 40),  # more than _PLAIN_CONTAINER_MAX items in all
        {"f": len},
        [0] * (reduction._PLAIN_CONTAINER_MAX + 1),
        bytearray(b"x"),  # may go out of band
        1j,
        {1, 2},
    ],
    ids=repr,
)
def test_other_objects_do_not_take_the_shortcut(obj):
    assert not reduction._is_plain(obj)


class _PersistentPickler(reduction.ForkingPickler):
    def persistent_id(self, obj):
        return "seven" if obj == 7 else None


class _PersistentSerializer(reduction.Serializer):
    """A serializer of somebody else's: its pickler sees every object."""

    @property
    def pickler_class(self):
        return _PersistentPickler


def test_other_serializers_do_not_take_the_shortcut():
    data = dumps((7, 8), serializer=_PersistentSerializer())
    assert data != pickle.dumps((7, 8), 5)
    data, buffers = reduction.dumps_oob(7, serializer=_PersistentSerializer())
    assert data != pickle.dumps(7, 5) and buffers == []


def test_shortcut_still_checks_the_serializer_name():
    with pytest.raises(ValueError, match="unknown serializer"):
        reduction.dumps_oob(1, serializer="nope")
    with pytest.raises(ValueError, match="unknown serializer"):
        dumps(1, serializer="nope")


def _reduce_tuple_subclass(t):
    return tuple, (("reduced",),)


@pytest.mark.parametrize("serializer", ["dill", "pickle"])
def test_registered_reducer_of_a_tuple_subclass_still_applies(serializer):
    reduction.register(_Tuple, _reduce_tuple_subclass)
    try:
        assert loads(dumps(_Tuple((1, 2)), serializer=serializer)) == ("reduced",)
    finally:
        del reduction.ForkingPickler._extra_reducers[_Tuple]
        reduction._DISPATCH.invalidate()


def test_dill_pieces_keep_the_rest_at_pickle_speed():
    tuples = [(i, str(i), float(i)) for i in range(1000)]
    with_lambda = dumps([lambda: 1, tuples])
    # One small dill piece; the tuples are pickled by the C pickler as usual.
    assert len(with_lambda) < len(pickle.dumps(tuples, 5)) + 2000
    assert loads(with_lambda)[1] == tuples


def test_default_protocol_is_5():
    assert reduction.DEFAULT_PROTOCOL == 5
    assert dumps([1])[:2] == b"\x80\x05"
    assert reduction.ForkingPickler.dumps([1])[:2] == b"\x80\x05"


def test_lower_protocols_work():
    for protocol in (2, 3, 4):
        f = our_copy(lambda x: x + 1, protocol=protocol)
        assert f(1) == 2
        data = dumps(h.make_adder(1), protocol=protocol)
        assert data[1] == protocol


# -- the whole-payload dill fallback -----------------------------------------


@pytest.fixture
def no_by_value_types(monkeypatch):
    """Make the fast path fail on locks and modules, so that dill takes the payload."""
    monkeypatch.setattr(reduction, "_BY_VALUE_TYPES", frozenset())


@pytest.mark.filterwarnings("ignore::dill.PicklingWarning")
def test_fallback_pickles_the_whole_payload_with_dill(no_by_value_types):
    payload = [1, threading.Lock(), sys, lambda x: x * 3]
    data = dumps(payload)
    copy = pickle.loads(data)
    assert copy[0] == 1
    assert type(copy[1]) is type(threading.Lock())
    assert copy[2] is sys
    assert copy[3](2) == 6


def test_fallback_with_out_of_band_buffers(no_by_value_types):
    arr = np.arange(300_000.0)
    data, buffers = dumps_oob([arr, threading.Lock()], min_size=1000)
    assert len(buffers) == 1  # the buffers of the failed fast attempt were dropped
    assert np.shares_memory(np.frombuffer(buffers[0]), arr)
    copy = loads(data, buffers=buffers)
    assert (copy[0] == arr).all()


def test_fallback_buffer_callback_sees_only_the_returned_attempt(no_by_value_types):
    arr = np.arange(1000.0)
    seen = []
    data = dumps([arr, threading.Lock()], buffer_callback=seen.append)
    assert len(seen) == 1
    assert (loads(data, buffers=seen)[0] == arr).all()


def test_fallback_dump_writes_only_the_final_stream(no_by_value_types):
    file = io.BytesIO()
    reduction.dump([1, threading.Lock()], file)
    reduction.dump("next", file)
    file.seek(0)
    assert pickle.load(file)[0] == 1
    assert pickle.load(file) == "next"


# -- out-of-band buffers ------------------------------------------------------


def test_dumps_oob_sends_large_arrays_as_views():
    big = np.arange(300_000.0)  # 2.4 MB
    small = np.arange(10)
    data, buffers = dumps_oob({"big": big, "small": small})
    assert len(buffers) == 1
    assert isinstance(buffers[0], memoryview)
    assert np.shares_memory(np.frombuffer(buffers[0]), big)  # a view, not a copy
    assert len(data) < 2000
    copy = loads(data, buffers=buffers)
    assert (copy["big"] == big).all() and (copy["small"] == small).all()


def test_dumps_oob_min_size():
    arr = np.arange(100.0)
    assert dumps_oob(arr)[1] == []
    data, buffers = dumps_oob(arr, min_size=0)
    assert len(buffers) == 1
    assert (loads(data, buffers=buffers) == arr).all()


def test_dumps_oob_bytearray_through_picklebuffer():
    payload = bytearray(b"x" * 4096)
    data, buffers = dumps_oob(pickle.PickleBuffer(payload), min_size=1024)
    assert len(buffers) == 1
    payload[0:1] = b"y"  # the buffer is the bytearray's memory
    assert bytes(buffers[0][:1]) == b"y"
    assert bytes(loads(data, buffers=buffers)) == bytes(payload)


def test_dumps_oob_array_in_a_closure():
    arr = np.arange(200_000.0)

    def total():
        return arr.sum()

    data, buffers = dumps_oob(total, min_size=1000)
    assert len(buffers) == 1 and len(data) < 5000
    assert loads(data, buffers=buffers)() == arr.sum()


def test_dumps_oob_rejects_old_protocols():
    with pytest.raises(ValueError, match="protocol 5"):
        dumps_oob([1], protocol=4)


@pytest.mark.parametrize("serializer", ["dill", "pickle"])
def test_buffer_callback_decides_in_band(serializer):
    a, b = np.arange(10.0), np.arange(20.0)
    kept = []

    def callback(buffer):
        if buffer.raw().nbytes == a.nbytes:
            return True  # in band
        kept.append(buffer)
        return False

    data = dumps([a, b, lambda: 1] if serializer == "dill" else [a, b], buffer_callback=callback)
    assert len(kept) == 1
    copy = loads(data, buffers=kept)
    assert (copy[0] == a).all() and (copy[1] == b).all()


def test_memoryview_round_trips():
    view = memoryview(np.arange(6, dtype="i4").reshape(2, 3))
    copy = our_copy(view)
    assert isinstance(copy, memoryview)
    assert (copy.format, copy.shape, copy.tolist()) == ("i", (2, 3), view.tolist())
    assert our_copy(memoryview(b"abcdef")[::2]).tobytes() == b"ace"
    data, buffers = dumps_oob(memoryview(bytearray(4096)), min_size=1024)
    assert len(buffers) == 1 and loads(data, buffers=buffers).nbytes == 4096


# -- serializers ----------------------------------------------------------------


_MODULE_LAMBDA = lambda: 1


def test_pickle_serializer_keeps_stdlib_behaviour():
    with pytest.raises(pickle.PicklingError) as info:
        dumps(_MODULE_LAMBDA, serializer="pickle")
    assert not isinstance(info.value, SerializationError)
    assert "lambda" in str(info.value)
    # AttributeError before Python 3.14, PicklingError since.
    with pytest.raises((AttributeError, pickle.PicklingError), match="local object"):
        dumps(h.make_adder(1), serializer="pickle")
    assert loads(dumps(h.add, serializer="pickle"))(1, 2) == 3


def test_cloudpickle_serializer():
    pytest.importorskip("cloudpickle", reason="cloudpickle is not installed")
    y = 5
    assert our_copy(lambda x: x + y, serializer="cloudpickle")(1) == 6
    assert our_copy(h.make_counter(), serializer="cloudpickle")() == 1
    serializer = reduction.get_serializer("cloudpickle")
    assert serializer.name == "cloudpickle"
    assert issubclass(serializer.pickler_class, pickle.Pickler)
    assert "cloudpickle" in reduction.available_serializers()


def test_cloudpickle_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cloudpickle", None)
    monkeypatch.setattr(reduction._CloudpickleSerializer, "_class", None)
    monkeypatch.setattr(reduction._SERIALIZERS["cloudpickle"], "_class", None, raising=False)
    with pytest.raises(ImportError, match="pip install cloudpickle"):
        reduction.get_serializer("cloudpickle")


def test_serializer_is_read_from_the_environment_at_call_time(monkeypatch):
    monkeypatch.setenv("MULTIPROCESS_SERIALIZER", "pickle")
    assert reduction.get_serializer().name == "pickle"
    with pytest.raises(pickle.PicklingError):
        dumps(_MODULE_LAMBDA)
    monkeypatch.setenv("MULTIPROCESS_SERIALIZER", "dill")
    assert our_copy(lambda: 1)() == 1
    monkeypatch.delenv("MULTIPROCESS_SERIALIZER")
    assert reduction.get_serializer().name == "dill"
    monkeypatch.setenv("MULTIPROCESS_SERIALIZER", "")
    assert reduction.get_serializer().name == "dill"
    # An explicit name wins over the environment.
    monkeypatch.setenv("MULTIPROCESS_SERIALIZER", "pickle")
    assert our_copy(lambda: 2, serializer="dill")() == 2


def test_unknown_serializer(monkeypatch):
    with pytest.raises(ValueError, match="unknown serializer 'marshal'.*'dill', 'pickle'"):
        reduction.get_serializer("marshal")
    with pytest.raises(ValueError, match="unknown"):
        dumps(1, serializer="marshal")
    monkeypatch.setenv("MULTIPROCESS_SERIALIZER", "yaml")
    with pytest.raises(ValueError, match="MULTIPROCESS_SERIALIZER"):
        dumps(1)


def test_get_serializer():
    dill_serializer = reduction.get_serializer("dill")
    assert isinstance(dill_serializer, reduction.Serializer)
    assert reduction.get_serializer("DILL") is dill_serializer
    assert reduction.get_serializer(dill_serializer) is dill_serializer
    assert issubclass(dill_serializer.pickler_class, reduction.ForkingPickler)
    assert reduction.get_serializer("pickle").pickler_class is reduction.ForkingPickler
    assert reduction.available_serializers()[:2] == ["dill", "pickle"]
    for name in reduction.available_serializers():
        serializer = reduction.get_serializer(name)
        assert serializer.name == name
        file = io.BytesIO()
        serializer.dump({"a": [1]}, file)
        assert serializer.loads(file.getvalue()) == {"a": [1]}
        assert serializer.loads(serializer.dumps((1, 2))) == (1, 2)


def test_pickler_classes_are_usable_directly():
    for name in reduction.available_serializers():
        cls = reduction.get_serializer(name).pickler_class
        file = io.BytesIO()
        cls(file).dump([1, h.Point(1, 2)])
        assert pickle.loads(file.getvalue()) == [1, h.Point(1, 2)]
        assert cls.loads(cls.dumps("x")) == "x"
    hybrid = reduction.get_serializer("dill").pickler_class
    assert hybrid.loads(hybrid.dumps(lambda: 3))() == 3


# -- the registry -----------------------------------------------------------------


class _Registered:
    def __init__(self, value):
        self.value = value


def _reduce_registered(obj):
    return _Registered, (obj.value * 10,)


@pytest.fixture
def registered():
    reduction.register(_Registered, _reduce_registered)
    yield
    del reduction.ForkingPickler._extra_reducers[_Registered]
    reduction._DISPATCH.invalidate()


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("serializer", ["dill", "pickle", "cloudpickle"])
def test_registered_reducers_apply_to_every_serializer(serializer):
    if serializer not in reduction.available_serializers():
        pytest.skip("cloudpickle is not installed")
    assert our_copy(_Registered(1), serializer=serializer).value == 10
    file = io.BytesIO()
    reduction.ForkingPickler(file).dump(_Registered(2))
    assert pickle.loads(file.getvalue()).value == 20


@pytest.mark.usefixtures("registered")
def test_registered_reducers_apply_inside_dill(no_by_value_types):
    copy = our_copy([threading.Lock(), _Registered(3), lambda: _Registered(4)])
    assert copy[1].value == 30


def test_forking_pickler_instances_own_their_dispatch_table():
    pickler = reduction.ForkingPickler(io.BytesIO())
    assert pickler.dispatch_table[socket.socket] is reduction._reduce_socket
    pickler.dispatch_table[_Registered] = _reduce_registered
    assert _Registered not in reduction.ForkingPickler(io.BytesIO()).dispatch_table


# -- errors -----------------------------------------------------------------------


def _generator():
    yield 1


def test_unserializable_object_names_its_type_and_place():
    with pytest.raises(SerializationError) as info:
        dumps([1, {"gen": _generator()}])
    error = info.value
    assert isinstance(error, pickle.PicklingError) and isinstance(error, TypeError)
    message = str(error)
    assert "cannot serialize <class 'list'> object" in message
    assert "item [1]['gen'] (<class 'generator'>)" in message
    assert "not even with dill" in message
    assert isinstance(error.__cause__, TypeError)
    assert "generator" in str(error.__cause__)


def test_unserializable_global_of_a_by_value_function():
    gen = _generator()
    with pytest.raises(SerializationError) as info:
        dumps([1, lambda: gen])
    message = str(info.value)
    assert "<lambda>" in message and "by value through dill" in message
    assert "generator" in message
    assert info.value.__cause__ is not None


class _ReduceRaisesTypeError:
    def __reduce__(self):
        raise TypeError("I refuse")


class _ReduceRaisesAttributeError:
    def __init__(self):
        self.calls = 0

    def __reduce__(self):
        self.calls += 1
        raise AttributeError("no such thing")


def test_reduce_raising_type_error():
    with pytest.raises(SerializationError, match="_ReduceRaisesTypeError.*I refuse") as info:
        dumps(_ReduceRaisesTypeError())
    assert str(info.value.__cause__) == "I refuse"


def test_other_errors_of_the_object_propagate_unchanged():
    # As with the standard library (the queue feeder's error hook relies on it).
    obj = _ReduceRaisesAttributeError()
    with pytest.raises(AttributeError, match="no such thing"):
        dumps(obj)
    obj = _ReduceRaisesAttributeError()
    with pytest.raises(AttributeError, match="no such thing"):
        dumps(lambda: obj)  # met inside dill's piece


def test_spawning_only_objects_raise_runtime_error():
    class InheritOnly:
        def __reduce__(self):
            _spawning.assert_spawning(self)

    with pytest.raises(RuntimeError, match="through inheritance"):
        dumps([InheritOnly()])


# -- file descriptors -----------------------------------------------------------------


class _Conn:
    """The least a Connection offers to send_handle/recv_handle."""

    def __init__(self, sock):
        self._sock = sock

    def fileno(self):
        return self._sock.fileno()


@pytest.fixture
def socketpair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_send_and_receive_a_handle(socketpair):
    a, b = socketpair
    r, w = os.pipe()
    try:
        reduction.send_handle(_Conn(a), w, os.getpid())
        received = reduction.recv_handle(_Conn(b))
        assert received not in (r, w)
        os.write(received, b"through the copy")
        os.close(received)
        os.close(w)
        w = None
        assert os.read(r, 100) == b"through the copy"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_sendfds_recvfds_several(socketpair):
    a, b = socketpair
    pipes = [os.pipe() for _ in range(3)]
    try:
        reduction.sendfds(a, [w for _, w in pipes])
        received = reduction.recvfds(b, 10)
        assert len(received) == 3
        for (r, _), fd in zip(pipes, received):
            os.write(fd, b"k")
            os.close(fd)
            assert os.read(r, 1) == b"k"
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_recv_handle_without_a_descriptor(socketpair):
    a, b = socketpair
    a.send(b"\0")
    with pytest.raises(RuntimeError, match="without file descriptors"):
        reduction.recv_handle(_Conn(b))


def test_recvfds_count_mismatch(socketpair):
    a, b = socketpair
    r, w = os.pipe()
    try:
        fds = array.array("i", [w])
        a.sendmsg([bytes([2])], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        with pytest.raises(RuntimeError, match="received 1 file descriptors.*announced 2"):
            reduction.recvfds(b, 4)
    finally:
        os.close(r)
        os.close(w)


def test_recv_handle_at_eof(socketpair):
    a, b = socketpair
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError):
        reduction.recv_handle(_Conn(b))


def test_platform_constants():
    assert reduction.HAVE_SEND_HANDLE is True
    assert reduction.ACKNOWLEDGE is (sys.platform == "darwin")


class _FakeDupFd:
    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


class _FakeLauncher:
    """Stands in for a spawn launcher: keeps duplicated fds for the child."""

    def __init__(self):
        self.fds = []

    def duplicate_for_child(self, fd):
        self.fds.append(os.dup(fd))
        return self.fds[-1]

    def DupFd(self, fd):
        return _FakeDupFd(fd)


@pytest.fixture
def spawning():
    launcher = _FakeLauncher()
    _spawning.set_spawning_popen(launcher)
    yield launcher
    _spawning.set_spawning_popen(None)


def test_dupfd_while_spawning(spawning):
    r, w = os.pipe()
    try:
        dup = reduction.DupFd(w)
        assert isinstance(dup, _FakeDupFd) and dup.fd == spawning.fds[0]
    finally:
        for fd in (r, w, *spawning.fds):
            os.close(fd)


@pytest.mark.parametrize("serializer", ["dill", "pickle"])
def test_sockets_pickle_through_dupfd(spawning, socketpair, serializer):
    a, b = socketpair
    data = dumps({"sock": a}, serializer=serializer)
    with loads(data)["sock"] as copy:
        assert copy.fileno() == spawning.fds[0]
        assert (copy.family, copy.type) == (a.family, a.type)
        copy.sendall(b"hello")
        assert b.recv(5) == b"hello"


def test_dupfd_outside_spawning_uses_the_resource_sharer():
    try:
        from multiprocess import resource_sharer
    except ImportError:
        pytest.skip("multiprocess.resource_sharer does not exist yet")
    if not hasattr(resource_sharer, "DupFd"):
        pytest.skip("multiprocess.resource_sharer.DupFd does not exist yet")
    r, w = os.pipe()
    try:
        dup = reduction.DupFd(w)
        assert isinstance(dup, resource_sharer.DupFd)
        fd = dup.detach()
        os.write(fd, b"z")
        os.close(fd)
        assert os.read(r, 1) == b"z"
    finally:
        os.close(r)
        os.close(w)
        if hasattr(resource_sharer, "stop"):
            resource_sharer.stop(timeout=10)


# -- module surface -----------------------------------------------------------------


def test_public_names():
    for name in reduction.__all__:
        assert hasattr(reduction, name), name
    for name in (
        "ForkingPickler",
        "register",
        "dump",
        "send_handle",
        "recv_handle",
        "sendfds",
        "recvfds",
        "DupFd",
    ):
        assert hasattr(reduction.AbstractReducer, name), name
    assert reduction.ForkingPickler.loads is pickle.loads
    assert issubclass(reduction.ForkingPickler, pickle.Pickler)


def test_module_does_not_import_stdlib_multiprocessing():
    # (dill itself imports multiprocessing.reduction when it is first used.)
    code = (
        'import sys, multiprocess.reduction as r; r.loads(r.dumps([1, (2.0, "x"), r.dumps])); '
        "print(any(m == 'multiprocessing' or m.startswith('multiprocessing.') "
        "for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False"


# -- across interpreters: a real __main__ ---------------------------------------------

_LOADER = """
import json, pickle, sys
with open(sys.argv[1], "rb") as f:
    p = pickle.load(f)
pts = p["points"]
print(json.dumps({
    "scaled": p["scaled"](3),
    "lambda": p["lambda"](1),
    "outside_guard": p["outside_guard"](150),
    "partial": p["partial"](),
    "counter": [p["counter"](), p["counter"]()],
    "is_point": [p["is_point"](q) for q in pts],
    "same_class": [type(q) is p["Point"] for q in pts],
    "point_method": [pts[1].scaled().x, pts[1].scaled().y],
    "script_imported": any("_reduction_main_script" in m for m in sys.modules),
}))
"""


@pytest.mark.parametrize("serializer", ["dill", None])
def test_main_script_objects_load_in_a_fresh_interpreter(tmp_path, serializer):
    out_file = tmp_path / "payload.pickle"
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("MULTIPROCESS_SERIALIZER", None)
    args = [sys.executable, os.path.join(HERE, "_reduction_main_script.py"), str(out_file)]
    if serializer:
        args.append(serializer)
    subprocess.run(args, env=env, check=True, timeout=60, cwd=str(tmp_path))
    loaded = subprocess.run(
        [sys.executable, "-c", _LOADER, str(out_file)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {
        "scaled": 21,
        "lambda": 8,
        "outside_guard": 50,
        "partial": 42,
        "counter": [12, 13],
        "is_point": [True, True],
        "same_class": [True, True],
        "point_method": [21, 28],
        "script_imported": False,
    }


def test_main_class_dill_cannot_rebuild_goes_by_name(monkeypatch):
    # dill cannot pickle a ctypes Structure type by value; one defined in
    # __main__ and found there by name is sent by reference, as pickle does.
    import ctypes

    main = sys.modules["__main__"]

    class Pair(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_int)]

    Pair.__module__ = "__main__"
    Pair.__qualname__ = "Pair"
    monkeypatch.setattr(main, "Pair", Pair, raising=False)
    assert reduction.loads(reduction.dumps(Pair)) is Pair

    # Not findable by name: the error names the type.
    class Hidden(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int)]

    Hidden.__module__ = "__main__"
    with pytest.raises(
        pickle.PicklingError,
        match=r"cannot serialize <class .__main__\.test_main_class.*PyCStructType",
    ):
        reduction.dumps(Hidden)
