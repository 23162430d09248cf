"""Benchmark a whole ``carabm run quickstart`` process: wall and CPU time, ms/step, and where the time goes.

Each run is a fresh Python process that does what the ``carabm`` command does
(``carabm.cli.main(["run", "quickstart", ...])``), with light timers around the model step
and the output writers (a few thousand clock reads, well under 0.1 % of the run). The parent
measures the process from outside: wall time with ``time.perf_counter`` and CPU time (user +
system, all threads) with ``resource.getrusage(RUSAGE_CHILDREN)``. CPU time is far less
sensitive to other processes on the machine than wall time, so both are printed, with the
load average before and after. Reported: the median over ``--runs`` runs of

* wall and CPU time of the whole process;
* ms/step: the steps' wall (and CPU) time per step, the first step aside (it loads numba's cache);
* the shares of the wall (and CPU) time spent in start-up (interpreter, imports, config, building the
  model, the first step with its numba cache load, the end-of-run summary), stepping (the
  other steps, readouts included) and output (time-series flushes, snapshots, XDMF, checkpoints).

The first run may compile the numba kernels (a cold cache, ~30 s): run ``--warmup 1`` to keep
it out of the median. The reference of the wall-time case is issue 20's target, 20 s for the
14-day quickstart on 2 cores (ratio > 1: faster than the target).

``--against CHECKOUT`` times another carabm source tree (e.g. a ``git worktree`` of the last
release) in the same measurement: its runs alternate with this checkout's (ABBA: the first of each
pair alternates, since on the development machine the second run of a pair was up to 20 % faster
whichever tree it was), and one more case
reports the ratio of the median wall times (> 1: this checkout is faster) with each pair's ratio.
On a shared machine whose speed drifts, that ratio is the number to trust, not either time alone.

    python scripts/bench_run.py [--runs 3] [--warmup 0] [--backend numpy] [--set KEY=VALUE ...] [--keep FOLDER] [--against CHECKOUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: issue 20: a single 14-day quickstart run on 2 cores, whole process [s]
TARGET_WALL_S = 20.0
#: steps of the 14-day quickstart (336 h at 6 min)
QUICKSTART_STEPS = 3360
#: the checkout this script belongs to (its runs import carabm from here)
ROOT = Path(__file__).resolve().parents[1]

# Runs in the child process: timers around the step and the writers, then the command line's main.
_CHILD = r"""
import json, sys, time
from pathlib import Path
START = time.perf_counter()
SOURCE = Path(sys.argv.pop(2)).resolve()
# "python -c" puts the working folder first on sys.path, ahead of PYTHONPATH: run from a
# checkout's root, its carabm would be imported whichever checkout was asked for.
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import carabm
if not Path(carabm.__file__).resolve().is_relative_to(SOURCE):
    sys.exit(f"bench_run: error: imported carabm from {Path(carabm.__file__).parent}, not from {SOURCE}")
timers = {"step_s": 0.0, "first_step_s": 0.0, "steps": 0, "output_s": 0.0, "step_cpu_s": 0.0, "output_cpu_s": 0.0}

def timed(owner, name, key):
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent, cpu = time.perf_counter() - t, time.process_time() - c
            if key == "step":
                if timers["steps"]:
                    timers["step_s"] += spent
                    timers["step_cpu_s"] += cpu
                timers["steps"] += 1
            else:
                timers["output_s"] += spent
                timers["output_cpu_s"] += cpu
    setattr(owner, name, wrapper)

import carabm.simulation as simulation
from carabm.io.hdf5 import RunWriter
from carabm.cli import main
timed(simulation.Simulation, "step", "step")
for name in ("append_timeseries", "write_snapshot", "write_events", "set_status"):
    timed(RunWriter, name, "output")
for name in ("write_xdmf", "_checkpoint"):
    timed(simulation, name, "output")
code = main(sys.argv[2:])
timers["child_s"] = time.perf_counter() - START
with open(sys.argv[1], "w") as f:
    json.dump(timers, f)
sys.exit(code)
"""


def one_run(out: Path, backend: str, overrides: list[str], source: Path = ROOT) -> dict[str, Any]:
    """One whole-process run of the carabm in ``source`` (a checkout's root): wall and CPU time from outside, the phases from inside."""
    timers = out.with_suffix(".json")
    sets = [a for s in [f"run.backend={backend}", *overrides] for a in ("--set", s)]
    argv = [sys.executable, "-c", _CHILD, str(timers), str(source), "run", "quickstart", "--out", str(out), "--overwrite", "--no-progress", *sets]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"bench_run: error: the run failed (exit {done.returncode}): {message}")
    phases = json.loads(timers.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    steps = max(int(phases["steps"]), 1)
    stepping = phases["step_s"]
    output = phases["output_s"]
    return {"wall_s": wall, "cpu_s": cpu, "steps": steps, "ms_per_step": 1e3 * stepping / max(steps - 1, 1),
            "cpu_ms_per_step": 1e3 * phases["step_cpu_s"] / max(steps - 1, 1),
            "startup_s": wall - stepping - output, "stepping_s": stepping, "output_s": output,
            "startup_cpu_s": cpu - phases["step_cpu_s"] - phases["output_cpu_s"], "stepping_cpu_s": phases["step_cpu_s"],
            "output_cpu_s": phases["output_cpu_s"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_run", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs (the median is reported); default 3")
    parser.add_argument("--warmup", type=int, default=0, help="runs before the measured ones (a cold numba cache compiles in the first)")
    parser.add_argument("--backend", choices=("numpy", "cupy", "auto"), default="numpy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override passed to carabm run, repeatable")
    parser.add_argument("--keep", type=Path, metavar="FOLDER", help="keep the runs' output files in FOLDER (to compare results)")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT",
                        help="another carabm checkout (its root folder): its runs alternate with these, and the ratio is reported")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    if args.against is not None and not (args.against / "carabm" / "__init__.py").is_file():
        parser.error(f"--against {args.against}: not a carabm checkout (no carabm/__init__.py in it)")
    from carabm.engine.backend import get_backend  # noqa: PLC0415 - after the argument check
    from carabm.errors import CarabmError  # noqa: PLC0415

    try:
        device = get_backend(args.backend).device
    except CarabmError as exc:
        print(f"bench_run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    if args.keep is not None and not args.keep.is_dir():
        parser.error(f"--keep {args.keep}: not a folder")
    sources = [("", ROOT, runs)] + ([("against ", args.against.resolve(), other)] if args.against is not None else [])
    with tempfile.TemporaryDirectory(prefix="bench_run_") as folder:
        for i in range(args.warmup + args.runs):
            # in turn, and in the other order every second run (ABBA): a slow spell of a shared machine, or
            # a second run of a pair that is faster than the first, hits both alike
            for label, source, results in sources if i % 2 == 0 else sources[::-1]:
                name = f"run{i}.h5" if not label else f"against{i}.h5"
                result = one_run((args.keep or Path(folder)) / name, args.backend, args.set, source)
                kind = "warm-up" if i < args.warmup else "run"
                print(f"bench_run: {label}{kind} {i + 1}: {result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU, "
                      f"{result['ms_per_step']:.2f} ms/step", file=sys.stderr, flush=True)  # fmt: skip
                if i >= args.warmup:
                    results.append(result)
    load_after = os.getloadavg()
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    wall, steps = median["wall_s"], int(median["steps"])
    target_ms = 1e3 * TARGET_WALL_S / QUICKSTART_STEPS
    common = {"runs": args.runs, "steps": steps, "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in load_after]}  # fmt: skip
    target = f"issue 20 target: 14-day quickstart in {TARGET_WALL_S:g} s on 2 cores"
    cases = [
        {"case": "quickstart run wall time (whole process, median)", "value": round(wall, 3), "unit": "s", "reference": target,
         "reference_value": TARGET_WALL_S, "ratio": round(TARGET_WALL_S / wall, 3), **common,
         "wall_s_each": [round(r["wall_s"], 3) for r in runs]},
        {"case": "quickstart run CPU time (user + system, median)", "value": round(median["cpu_s"], 3), "unit": "s", "reference": target,
         "reference_value": TARGET_WALL_S, "ratio": round(TARGET_WALL_S / median["cpu_s"], 3), **common,
         "cpu_s_each": [round(r["cpu_s"], 3) for r in runs]},
        {"case": "quickstart ms/step (steps after the first, median)", "value": round(median["ms_per_step"], 4), "unit": "ms",
         "reference": f"the target's share per step ({TARGET_WALL_S:g} s / {QUICKSTART_STEPS} steps)",
         "reference_value": round(target_ms, 4), "ratio": round(target_ms / median["ms_per_step"], 3),
         "cpu_ms_per_step": round(median["cpu_ms_per_step"], 4), **common},
    ]  # fmt: skip
    for phase, what in (("startup", "imports, config, build, numba cache load (first step), summary"),
                        ("stepping", "model steps after the first, readouts included"),
                        ("output", "time-series flushes, snapshots, XDMF, checkpoints")):  # fmt: skip
        seconds = max(median[f"{phase}_s"], 1e-6)
        cases.append({"case": f"{phase} time ({what})", "value": round(seconds, 4), "unit": "s", "reference": "whole-process wall time",
                      "reference_value": round(wall, 3), "ratio": round(wall / seconds, 3), "share": round(seconds / wall, 4),
                      "cpu_s": round(median[f"{phase}_cpu_s"], 4), "cpu_share": round(median[f"{phase}_cpu_s"] / median["cpu_s"], 4), **common})  # fmt: skip
    if other:
        ratios = [o["wall_s"] / r["wall_s"] for r, o in zip(runs, other)]
        other_wall = statistics.median(o["wall_s"] for o in other)
        other_cpu = statistics.median(o["cpu_s"] for o in other)
        cases.append({"case": "quickstart run wall time against another checkout (median)", "value": round(wall, 3), "unit": "s",
                      "reference": f"the checkout {args.against}, its runs in turn with these", "reference_value": round(other_wall, 3),
                      "ratio": round(other_wall / wall, 3), "ratio_each": [round(x, 3) for x in ratios],
                      "cpu_ratio": round(other_cpu / median["cpu_s"], 3), **common})  # fmt: skip
    print(f"run benchmark: carabm run quickstart, backend {args.backend}, {steps} steps, median of {args.runs} "
          f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} CPUs)")  # fmt: skip
    for case in cases:
        share = f"  ({case['share']:.0%} of the wall time; CPU {case['cpu_s']:.4g} s, {case['cpu_share']:.0%})" if "share" in case else ""
        share += f"  (CPU {case['cpu_ms_per_step']:.4g} ms/step)" if "cpu_ms_per_step" in case else ""
        share += f"  (the other: {case['reference_value']:.4g} s, {case['ratio']:.3g}x; pairs {case['ratio_each']})" if "ratio_each" in case else ""
        print(f"  {case['case']:<95} {case['value']:>10.4g} {case['unit']}{share}")
    print(json.dumps({"bench": "run", "backend": args.backend, "device": device, "cases": cases}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
