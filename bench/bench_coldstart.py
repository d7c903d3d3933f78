"""Cold start: what a short script pays, against the standard library, in one run.

Run from the repository root (the package must be importable)::

    PYTHONPATH=src python bench/bench_coldstart.py [--repeat 15] [--methods fork spawn forkserver]

Each case runs in fresh interpreters, ours and the standard library's taking
turns; the table shows medians and the ratio ours / standard library:

* ``import``: the time of ``import multiprocess`` against ``import
  multiprocessing`` inside a fresh interpreter (goal: at most 1.5x), and the
  whole process, interpreter start-up included;
* ``script``: a fresh interpreter that imports the package, starts ``Pool(2)``,
  maps ``abs`` over 20,000 integers and exits, per start method (goal: at most
  1.2x);
* ``first task``: ``Pool(2)`` then the first ``apply`` answered, in an
  interpreter that has imported the package, per start method (goal: at most
  1.0x).

Each case also shows the CPU time of the whole process tree (``CPU, all``):
on a loaded machine the wall times move with the load, the CPU times much
less.

Our modules are compiled to bytecode first (``compileall``), as ``pip
install`` does: with ``PYTHONDONTWRITEBYTECODE`` set, an editable checkout
would otherwise compile its sources in every fresh interpreter, which the
standard library (shipped compiled) never does.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time

import multiprocess

PACKAGES = ("multiprocess", "multiprocessing")

IMPORT = """
import time
t = time.perf_counter()
import {pkg}
print(time.perf_counter() - t)
"""

SCRIPT = """
import {pkg} as mp
if __name__ == "__main__":
    with mp.get_context({method!r}).Pool(2) as pool:
        pool.map(abs, range(20000))
"""

FIRST_TASK = """
import time
import {pkg} as mp
if __name__ == "__main__":
    ctx = mp.get_context({method!r})
    t = time.perf_counter()
    pool = ctx.Pool(2)
    pool.apply(abs, (-1,))
    print(time.perf_counter() - t)
    pool.terminate()
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(code: str, env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``code`` in a fresh interpreter: (wall time, CPU time, the float it printed or 0).

    The CPU time is the whole tree's (the interpreter, its workers, a
    forkserver and its children, each counted once reaped): unlike the wall
    time, it hardly moves with the load of a shared machine.
    """
    cpu = _children_cpu()
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    printed = out.stdout.split()
    return wall, _children_cpu() - cpu, float(printed[-1]) if printed else 0.0


def _case(name: str, template: str, repeat: int, env: dict[str, str], **fmt: str) -> None:
    walls: dict[str, list[float]] = {pkg: [] for pkg in PACKAGES}
    cpus: dict[str, list[float]] = {pkg: [] for pkg in PACKAGES}
    inner: dict[str, list[float]] = {pkg: [] for pkg in PACKAGES}
    for _ in range(repeat):
        for pkg in PACKAGES:  # taking turns: a noisy moment hits both
            wall, cpu, value = _run(template.format(pkg=pkg, **fmt), env)
            walls[pkg].append(wall)
            cpus[pkg].append(cpu)
            inner[pkg].append(value)
    rows = [("process", walls), ("CPU, all", cpus)]
    if any(inner["multiprocess"]):
        rows.insert(0, ("timed part", inner))
    for label, times in rows:
        ours, std = (statistics.median(times[pkg]) for pkg in PACKAGES)
        print(f"{name:<28} {label:<11} {ours * 1e3:9.1f} ms {std * 1e3:9.1f} ms {ours / std:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--methods", nargs="+", default=["fork", "spawn", "forkserver"])
    args = parser.parse_args()

    package_dir = os.path.dirname(multiprocess.__file__)
    compileall.compile_dir(package_dir, quiet=1)
    env = dict(os.environ)
    # The children must import the same package as this process.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(package_dir), env.get("PYTHONPATH")) if p
    )

    print(f"Python {sys.version.split()[0]}, multiprocess from {package_dir}")
    print(f"{'case':<28} {'':<11} {'ours':>12} {'stdlib':>12} {'ratio':>8}")
    _case("import", IMPORT, args.repeat, env)
    for method in args.methods:
        _case(f"script, {method}", SCRIPT, args.repeat, env, method=method)
    for method in args.methods:
        _case(f"first task, {method}", FIRST_TASK, args.repeat, env, method=method)


if __name__ == "__main__":
    main()
