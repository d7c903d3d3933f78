"""Run by test_clients.py: a real client of multiprocess, as its users run it."""

import os
import sys

from datasets import Dataset

import multiprocess

OFFSET = 7


def main():
    ds = Dataset.from_dict({"x": list(range(1000))})
    out = ds.map(lambda ex: {"y": ex["x"] * 2 + OFFSET, "pid": os.getpid()}, num_proc=2)
    assert out["y"] == [x * 2 + OFFSET for x in range(1000)]
    # Which worker takes which shard is the pool's choice: under spawn one may
    # do both before the other is up.  What matters: the work ran in workers.
    pids = set(out["pid"])
    assert os.getpid() not in pids and 1 <= len(pids) <= 2, pids
    print("datasets map num_proc=2 ok in worker processes")
    out2 = ds.map(lambda batch: {"z": [v + 1 for v in batch["x"]]}, batched=True, num_proc=2)
    assert out2["z"][-1] == 1000
    f = ds.filter(lambda ex: ex["x"] % 3 == 0, num_proc=2)
    assert len(f) == 334
    print("datasets batched map + filter ok")


if __name__ == "__main__":
    multiprocess.set_start_method(sys.argv[1])
    print("multiprocess from", multiprocess.__file__)
    main()
