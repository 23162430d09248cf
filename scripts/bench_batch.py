"""Benchmark how a model step's time grows with B members' worth of lattice and agents: what batching can gain.

A batch of B members advanced together (issue 20's member axis) makes the same array operations
as one member, on arrays B times longer. This measures what that can gain before it is built.
Each size B is the quickstart patient on a lattice B times longer along y, with B times its
initial agents (``cells.bcell.initial_count`` and ``cells.microglia.initial_count``; the myeloid
cells follow the tumour): B members' worth of voxels and agents in one model. It is a stand-in
for a batch's arrays, not a batch (one serum, one blood pool, tiles that touch), so its step
costs what a perfect batch's would. Reported per B:

* ms per step (wall, the device synchronised; CPU time of all threads alongside) after
  ``--warm-h`` hours of warm-up, the minimum over ``--repeat`` measurements;
* ``B * T(1) / T(B)``: the speed-up of the batch over B single runs one after another if batching
  itself cost nothing: the upper bound of any member axis (issue 20 asks 4x at B = 16);
* ``T(B) = shared + per_member * B`` through the two smallest sizes: the part of a step a batch
  would share (Python and host work, launches, small fixed passes) and the part it cannot (work
  on every voxel and agent); larger sizes also pay for cache misses.

The early hours are measured (the quickstart's agents grow later, so the per-member share later
is larger still). On a GPU the same script shows how far the batched step is from launch-bound.

    python scripts/bench_batch.py [--size small|medium|large] [--sizes B ...] [--steps N] [--warm-h H] [--repeat R] [--backend auto|numpy|cupy]

``--size``: small (B = 1, 2; 30 steps), medium (1, 2, 4, 8, 16; 120 steps; the default), large (also
32 and 64); ``--sizes`` and ``--steps`` override it.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from carabm.engine.backend import Backend, get_backend
from carabm.errors import CarabmError
from carabm.io.config import load_config
from carabm.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
#: issue 20: a batch of 16 quickstart members at least 4x faster than the 16 run one after another
TARGET_SIZE, TARGET_SPEEDUP = 16, 4.0
#: --size: (members' worth measured, timed steps)
PRESETS = {"small": ([1, 2], 30), "medium": ([1, 2, 4, 8, 16], 120), "large": ([1, 2, 4, 8, 16, 32, 64], 120)}


def overrides_for(size: int) -> list[str]:
    """``--set`` overrides that give the quickstart ``size`` members' worth of voxels and agents (tiles along y)."""
    base = load_config(QUICKSTART, check_memory=False)
    nz, ny, nx = base.lattice.shape
    return [f"lattice.shape=[{nz},{ny * size},{nx}]", f"cells.bcell.initial_count={base.cells.bcell.initial_count * size}",
            f"cells.microglia.initial_count={base.cells.microglia.initial_count * size}"]  # fmt: skip


def time_size(size: int, backend: Backend, warm_steps: int, steps: int) -> dict[str, Any]:
    """Wall and CPU seconds per step of ``size`` members' worth, after ``warm_steps`` steps."""
    config = load_config(QUICKSTART, [*overrides_for(size), f"run.backend={backend.name}"])
    sim = Simulation(config, backend)
    for _ in range(warm_steps):
        sim.step()
    backend.synchronize()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        sim.step()
    backend.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"wall_s": wall / steps, "cpu_s": cpu / steps, "agents": int(sim.model.store.n), "voxels": int(sim.lattice.n_voxels)}
    del sim
    gc.collect()
    if backend.is_gpu:
        backend.xp.get_default_memory_pool().free_all_blocks()
    return out


def linear_fit(sizes: list[int], times: list[float]) -> tuple[float, float]:
    """``T = shared + per_member * B`` through the two smallest sizes (larger ones add cache misses); both >= 0."""
    if len(sizes) < 2:
        return 0.0, times[0] / sizes[0]
    (b1, t1), (b2, t2) = sorted(zip(sizes, times))[:2]
    per_member = max((t2 - t1) / (b2 - b1), 0.0)
    return max(t1 - per_member * b1, 0.0), per_member


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(PRESETS), default="medium", help="preset of sizes and steps (default medium)")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="B", help="members' worth to measure (1 is always added)")
    parser.add_argument("--steps", type=int, help="timed steps per size (default: the preset's)")
    parser.add_argument("--warm-h", type=float, default=6.0, help="simulated hours before the timing (default 6)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per size; the fastest is kept (default 1)")
    parser.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or PRESETS[args.size][0]
    args.steps = PRESETS[args.size][1] if args.steps is None else args.steps
    if args.steps < 1 or args.repeat < 1 or args.warm_h < 0 or min(args.sizes) < 1:
        parser.error("--steps, --repeat and --sizes must be at least 1 and --warm-h at least 0")
    try:
        backend = get_backend(args.backend)
    except CarabmError as exc:
        print(f"bench_batch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    sizes = sorted(set(args.sizes) | {1})
    dt_h = load_config(QUICKSTART, check_memory=False).run.dt_min / 60.0
    warm_steps = round(args.warm_h / dt_h)
    results: dict[int, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for size in sizes:  # the sizes in turn, repeat after repeat: a slower spell of a shared machine hits them alike
            r = time_size(size, backend, warm_steps, args.steps)
            if size not in results or r["wall_s"] < results[size]["wall_s"]:
                results[size] = r
            print(f"bench_batch: {size} members' worth: {r['wall_s'] * 1e3:.4g} ms/step", file=sys.stderr, flush=True)
    single = results[1]["wall_s"] * 1e3
    shared, per_member = linear_fit(sizes, [results[b]["wall_s"] * 1e3 for b in sizes])
    cases: list[dict[str, Any]] = []
    print(f"batch bound benchmark, backend {backend.name} on {backend.device}: quickstart tiled along y, "
          f"{warm_steps}+{args.steps} steps, fastest of {args.repeat}")  # fmt: skip
    print(f"  {'B':>3}  {'ms/step':>9}  {'CPU ms':>8}  {'ms/member':>9}  {'bound B*T1/TB':>13}  agents, voxels")
    for size in sizes:
        r = results[size]
        ms, ratio = r["wall_s"] * 1e3, size * single / (r["wall_s"] * 1e3)
        target = f"  (issue 20 asks >= {TARGET_SPEEDUP:g}x)" if size == TARGET_SIZE else ""
        print(f"  {size:>3}  {ms:>9.4g}  {r['cpu_s'] * 1e3:>8.4g}  {ms / size:>9.4g}  {ratio:>12.3g}x  {r['agents']:,}, {r['voxels']:,}{target}")
        case = {"case": f"{size} members' worth, ms/step", "value": round(ms, 4), "unit": "ms",
                "reference": f"{size} single quickstart steps one after another ({size} x T(1))",
                "reference_value": round(size * single, 4), "ratio": round(ratio, 3), "cpu_ms": round(r["cpu_s"] * 1e3, 4),
                "agents": r["agents"], "voxels": r["voxels"], "warmup_steps": warm_steps, "timed_steps": args.steps}  # fmt: skip
        if size == TARGET_SIZE:
            case["target_ratio"] = TARGET_SPEEDUP
        cases.append(case)
    share = shared / single if single else 0.0
    print(f"  T(B) = {shared:.3g} + {per_member:.3g} B ms (B = {sizes[0]}, {sizes[1] if len(sizes) > 1 else sizes[0]}): a batch shares {100 * min(share, 1.0):.0f} % of a single step; "
          f"the bound as B grows is {single / per_member if per_member else float('inf'):.3g}x")  # fmt: skip
    print(json.dumps({"bench": "batch", "backend": backend.name, "device": backend.device, "cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
