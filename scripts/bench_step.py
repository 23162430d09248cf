"""Benchmark the whole model step (all layers of ``CrsModel.step``), GPU vs NumPy in the same run.

The model is built as ``carabm run`` builds it (``load_config`` with ``--set``-style overrides,
then ``Simulation``). Cases, by ``--size``:

* small:  configs/quickstart.yaml, ms per model step (the first steps after infusion).
* medium: also configs/default.yaml, ms per model step; and on a GPU a 256^3 lattice with
          about 1e6 agents (the default's initial counts scaled up), GPU only.
* large:  also the 256^3 case on NumPy, and the wall time of a full 14-day default run
          (``carabm.simulation.run``, HDF5 output included) on each backend.
``--full-run`` adds the 14-day run at any size. ``--no-reference`` (GPU only) skips the NumPy
references (their fields become null): ``scripts/gpu_check.py`` uses it to fit its time budget,
as the NumPy 14-day run alone takes minutes. Each case also reports on stderr as it finishes.

``--backend`` picks the backend under test: ``numpy``, ``cupy``, or ``auto`` (cupy when a
GPU is usable, else numpy). The reference is always the NumPy backend measured in the same
run on the same machine; ratio = NumPy time / time under test (1.0 for NumPy itself, the
baseline, when no GPU is under test). Step times are the mean over the timed steps after a
warm-up (the first steps compile numba kernels on the CPU and CUDA kernels on the GPU), with
the device synchronised before the clock is read.

    python scripts/bench_step.py --size small|medium|large [--backend auto|numpy|cupy] [--full-run] [--no-reference]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carabm.engine.backend import Backend, get_backend
from carabm.errors import CarabmError
from carabm.io.catalog import CATALOG
from carabm.io.config import Config, initial_agents, load_config
from carabm.simulation import Simulation, run

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
DEFAULT = ROOT / "configs" / "default.yaml"
BIG_SIDE, BIG_AGENTS = 256, 1_000_000
#: target on an H100 (issue "Whole step on the GPU"): the whole 14-day default run [s]
TARGET_FULL_RUN_S = 120.0


@dataclass
class Case:
    """One measured case: a config, how many steps, and on which backends."""

    name: str
    config: Path
    overrides: list[str] = field(default_factory=list)
    warmup: int = 3
    steps: int = 30
    numpy: bool = True  # measure on NumPy too (the reference)
    numpy_steps: int | None = None  # timed steps of the NumPy reference (default: steps)
    note: str = ""


def big_overrides(config: Path = DEFAULT, side: int = BIG_SIDE, agents: int = BIG_AGENTS) -> list[str]:
    """``--set`` overrides for a ``side``^3 lattice holding about ``agents`` cells: the config's initial counts scaled up.

    Every lattice cell type keeps its share (B cells, macrophages and monocytes in the
    tissue, microglia in the CNS); the tumour burden is unchanged, so the lattice stands
    for a larger share of the patient (and the CAR-T dose on the lattice scales with it).
    """
    base = load_config(config, check_memory=False)
    counts = {name: initial_agents(base.cells, name) for name, cell in CATALOG.cell_types.items() if cell.placed}
    factor = agents / max(sum(counts.values()), 1)
    return [f"lattice.shape=[{side},{side},{side}]"] + [
        f"cells.{name}.initial_count={round(count * factor)}" for name, count in counts.items()
    ]


def cases_for(size: str, gpu: bool) -> list[Case]:
    """The step-time cases of a size (the 14-day run is separate)."""
    cases = [Case("quickstart", QUICKSTART, warmup=3, steps=30 if size == "small" else 100)]
    if size in ("medium", "large"):
        cases.append(Case("default", DEFAULT, warmup=5, steps=50 if size == "medium" else 200))
        big = f"{BIG_SIDE}^3 ~{BIG_AGENTS:.0e} agents"
        if gpu or size == "large":
            numpy_too = size == "large"
            note = "" if numpy_too else "NumPy reference only at --size large"
            cases.append(Case(big, DEFAULT, big_overrides(), warmup=2, steps=20 if gpu else 3, numpy=numpy_too, numpy_steps=3, note=note))
    return cases


def build(case: Case, backend: Backend) -> Simulation:
    """The model of a case, as ``carabm run CONFIG --set ... --backend NAME`` builds it."""
    config: Config = load_config(case.config, [*case.overrides, f"run.backend={backend.name}"])
    return Simulation(config, backend)


def release(backend: Backend) -> None:
    gc.collect()
    if backend.is_gpu:
        backend.xp.get_default_memory_pool().free_all_blocks()


def time_steps(case: Case, backend: Backend, steps: int | None = None) -> dict[str, Any]:
    """Mean seconds per model step over ``steps`` (default ``case.steps``) after ``case.warmup`` steps; also agents and build time."""
    steps = steps or case.steps
    start = time.perf_counter()
    sim = build(case, backend)
    backend.synchronize()
    built = time.perf_counter() - start
    for _ in range(case.warmup):
        sim.step()
    backend.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        sim.step()
    backend.synchronize()
    seconds = (time.perf_counter() - start) / steps
    result = {"seconds_per_step": seconds, "agents": int(sim.model.store.n), "build_s": built,
              "voxels": int(sim.lattice.n_voxels), "time_h": float(sim.time_h)}  # fmt: skip
    del sim
    release(backend)
    return result


def full_run(backend: Backend) -> dict[str, Any]:
    """Wall time of the 14-day default run (build, steps, HDF5 output and checkpoints), as ``carabm run`` does it."""
    config = load_config(DEFAULT, [f"run.backend={backend.name}"])
    with tempfile.TemporaryDirectory(prefix="bench_step_") as folder:
        start = time.perf_counter()
        summary = run(config, out=Path(folder) / "default.h5", overwrite=True, progress=False)
        wall = time.perf_counter() - start
    release(backend)
    return {"wall_s": wall, "loop_s": float(summary["wall_s"]), "steps": int(summary["steps"]), "time_h": float(summary["time_h"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "medium", "large"), default="small")
    parser.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    parser.add_argument("--full-run", action="store_true", help="also time the full 14-day default run (always at --size large)")
    parser.add_argument("--no-reference", action="store_true", help="GPU only: skip the NumPy references (to fit a time budget)")
    args = parser.parse_args()
    try:
        backend = get_backend(args.backend)
    except CarabmError as exc:
        print(f"bench_step: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    numpy = get_backend("numpy")
    gpu = backend.is_gpu
    if args.no_reference and not gpu:
        parser.exit(2, "bench_step: error: --no-reference needs a GPU backend (NumPy is the reference itself)\n")
    with_reference = gpu and not args.no_reference
    cases: list[dict[str, Any]] = []
    rows: list[tuple[str, str, str, str, str]] = []
    notes: list[str] = []
    reference_name = f"numpy backend ({numpy.device})"
    skipped = ": --no-reference" if args.no_reference else " at this size"

    def add(case: str, value: float, unit: str, reference_value: float | None, extra: dict[str, Any], detail: str) -> None:
        if not gpu:  # NumPy under test: the reference is itself (the baseline)
            reference_value = value
        ratio = None if reference_value is None else reference_value / value
        cases.append({"case": case, "value": round(value, 4), "unit": unit,
                      "reference": reference_name if reference_value is not None else f"numpy backend (not run{skipped})",
                      "reference_value": None if reference_value is None else round(reference_value, 4),
                      "ratio": None if ratio is None else round(ratio, 3), **extra})  # fmt: skip
        ref_text = "-" if reference_value is None else f"{reference_value:.4g} {unit}"
        rows.append((case, f"{value:.4g} {unit}", ref_text, "-" if ratio is None else f"{ratio:.3g}x", detail))

    for case in cases_for(args.size, gpu):
        if case.note:
            notes.append(f"{case.name}: {case.note}")
        ours = time_steps(case, backend)
        ref = time_steps(case, numpy, case.numpy_steps) if with_reference and case.numpy else None
        if not gpu and case.name.startswith(f"{BIG_SIDE}^3"):
            notes.append(f"{case.name}: on NumPy only at --size large ({case.steps} timed steps)")
        extra = {"agents": ours["agents"], "voxels": ours["voxels"], "warmup_steps": case.warmup, "timed_steps": case.steps,
                 "build_s": round(ours["build_s"], 3)}  # fmt: skip
        detail = (f"{ours['voxels']:,} voxels, {ours['agents']:,} agents at t={ours['time_h']:g} h, "
                  f"{case.warmup}+{case.steps} steps, build {ours['build_s']:.2g} s")  # fmt: skip
        add(f"{case.name} ms/step", ours["seconds_per_step"] * 1e3, "ms", ref and ref["seconds_per_step"] * 1e3, extra, detail)
        print(f"bench_step: {case.name}: {ours['seconds_per_step'] * 1e3:.4g} ms/step", file=sys.stderr, flush=True)
    if not gpu and args.size != "large":
        notes.append(f"{BIG_SIDE}^3 ~{BIG_AGENTS:.0e} agents: on NumPy only at --size large")

    if args.size == "large" or args.full_run:
        ours = full_run(backend)
        ref = full_run(numpy) if with_reference else None
        extra = {"steps": ours["steps"], "loop_s": round(ours["loop_s"], 3)}
        if gpu:
            extra["target_s"] = TARGET_FULL_RUN_S
        detail = f"{ours['steps']} steps, {ours['time_h'] / 24:g} days, HDF5 output" + (f"; target <= {TARGET_FULL_RUN_S:g} s (H100)" if gpu else "")
        add("default 14-day run wall time", ours["wall_s"], "s", ref and ref["wall_s"], extra, detail)
        print(f"bench_step: default 14-day run: {ours['wall_s']:.4g} s", file=sys.stderr, flush=True)
    else:
        notes.append("14-day default run: at --size large or with --full-run")

    print(f"step benchmark ({args.size}), backend {backend.name} on {backend.device}; reference: {reference_name}")
    header = ("case", "value", "numpy", "ratio", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print("  " + "  ".join(f"{h:<{w}}" for h, w in zip(header, widths)))
    for row in rows:
        print("  " + "  ".join(f"{c:<{w}}" for c, w in zip(row, widths)) + "  " + row[4])
    for note in notes:
        print(f"  note: {note}")
    print(json.dumps({"bench": "step", "backend": backend.name, "device": backend.device, "cases": cases}))


if __name__ == "__main__":
    main()
