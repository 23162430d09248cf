"""Benchmark the host cost of checking a kernel launch's arguments (carabm.engine.kernels.check_args).

Usage: python scripts/bench_launch.py --size small|medium|large --backend numpy|cupy|auto

Times ``check_args`` on the 31 arguments of ``move_propose`` (kernels/movement.cu), the
widest launch of an agent step: a repeated launch (its argument fingerprint already
checked, the cached path every launch after the first takes) against the full check (the
caches emptied before each call, what every launch paid before the caches). NumPy arrays
on ``--backend numpy``, CuPy arrays on ``--backend cupy`` (nothing is launched: this is
host time only). Prints a table, then one JSON line (the benchmarks contract in DESIGN.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from carabm.engine import kernels
from carabm.engine.backend import get_backend
from carabm.errors import CarabmError

#: calls per timed batch, batches
SIZES = {"small": (200, 15), "medium": (1000, 25), "large": (5000, 40)}
KERNEL = ("movement", "move_propose")


def launch_arguments(xp: Any, params: tuple[kernels.Param, ...], n: int = 1024) -> list[Any]:
    """One valid argument list: an ``[n]`` array of the right dtype per pointer, small numbers as scalars."""
    return [xp.zeros(n, dtype=p.dtype) if p.pointer else (3 if p.dtype.kind in "iu" else 0.5) for p in params]


def _clear_caches() -> None:
    kernels._VERIFIED.clear()
    kernels._SCALARS.clear()


def time_batches(call: Any, calls: int, batches: int, before: Any = None) -> float:
    """Median µs per call over ``batches`` batches of ``calls`` calls (``before`` runs before each call, untimed when None)."""
    per_call = []
    for _ in range(batches):
        if before is None:
            start = time.perf_counter()
            for _ in range(calls):
                call()
            per_call.append((time.perf_counter() - start) / calls)
        else:
            total = 0.0
            for _ in range(calls):
                before()
                start = time.perf_counter()
                call()
                total += time.perf_counter() - start
            per_call.append(total / calls)
    return statistics.median(per_call) * 1e6


def main() -> None:
    """Parse the arguments, time both paths interleaved, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--backend", choices=("numpy", "cupy", "auto"), default="auto")
    args = parser.parse_args()
    try:
        backend = get_backend(args.backend)
    except CarabmError as exc:
        parser.exit(2, f"bench_launch: error: {exc}\n")
    xp = backend.xp
    info = kernels.source_info(KERNEL[0])
    params = info.signatures[KERNEL[1]]
    device: int | str = "host" if xp is np else int(xp.cuda.runtime.getDevice())
    arguments = launch_arguments(xp, params)

    def check() -> None:
        kernels.check_args(KERNEL[1], params, arguments, device)

    calls, batches = SIZES[args.size]
    check()  # warm the caches for the repeated launch
    cached = time_batches(check, calls, batches)
    full = time_batches(check, calls, batches, before=_clear_caches)
    print(f"check_args of {KERNEL[1]} ({len(params)} arguments, {backend.name} arrays), host time, median of {batches} batches")
    print(f"  {'repeated launch (cached)':<30} {cached:8.2f} µs")
    print(f"  {'full check (caches emptied)':<30} {full:8.2f} µs")
    print(f"  {'saved per launch':<30} {full - cached:8.2f} µs ({full / cached:.1f}x)")
    cases = [{
        "case": f"check_args {KERNEL[1]} µs/launch", "value": cached, "unit": "µs",
        "reference": "full check per launch", "reference_value": full, "ratio": full / cached,
    }]  # fmt: skip
    print(json.dumps({"bench": "launch", "backend": backend.name, "device": backend.device, "cases": cases}))


if __name__ == "__main__":
    sys.exit(main())
