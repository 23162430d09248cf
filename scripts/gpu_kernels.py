"""Launch every CUDA kernel of kernels/*.cu through carabm's loader, and time each with CUDA events.

Usage: python scripts/gpu_kernels.py [--size small|large] [--repeats N] [--timings FILE.json]

The driver for ``scripts/gpu_check.py``: under ``compute-sanitizer`` (memcheck, racecheck,
synccheck) at ``--size small`` it makes every kernel run once on small, valid inputs; at
``--size large`` (256^3 x 8 fields, 1e6 agents) it records per-kernel GPU time with a CUDA
event pair around each launch (after an untimed small run that compiles every module, and
with a short busy-wait queued before each pair so that host overhead is not counted). Kernels are reached through the engine's own launch
sequences (field step with and without conductance, blood-pool exchange, moves, wall
crossing, division, circulation, contacts, sensing, secretion, random words), so the inputs
are the ones a run produces. The run fails (exit 1) if a kernel of the sources was never
launched, which keeps it complete when a kernel is added.

:func:`drive` takes any launcher with :func:`carabm.engine.kernels.launch`'s interface and
an array module: the tests run it on NumPy under the host emulation of the kernels.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from carabm.engine import kernels, rng_compiled, scatter
from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.blood_pool import blood_sums_kernels, blood_update_kernels
from carabm.engine.circulation import BloodCirculation
from carabm.engine.fields import FieldSolver, _lod_step_kernels
from carabm.engine.lattice import Lattice, default_layout
from carabm.engine.movement import Movement

#: lattice shape, fields, agents per size
SIZES = {"small": ((6, 10, 40), 2, 400), "large": ((256, 256, 256), 8, 1_000_000)}
VOXEL_UM = 20.0


def all_kernels() -> set[tuple[str, str]]:
    """Every (module, kernel) of the shipped sources."""
    folder = kernels.kernels_dir()
    return {(path.stem, name) for path in folder.glob("*.cu") for name in kernels.source_info(path.stem).signatures}


def _kinds() -> list[KindSpec]:
    return [
        KindSpec("tcell", 8.0, ("tissue", "blood", "cns"), extravasation_per_h=30.0, intravasation_per_h=10.0, bbb_crossing=True),
        KindSpec("tumour", 1.0, ("tissue",), circulates=False),
        KindSpec("mono", 6.0, ("tissue", "blood", "cns"), chemotaxis_field=1, extravasation_per_h=20.0, bbb_crossing=True),
    ]


def drive(xp: Any, launch: kernels.Launcher, size: str = "small", backend: str = "numpy") -> list[tuple[str, str]]:
    """Run every kernel at least once through the engine's launch sequences; returns the launches made, in order."""
    shape, n_fields, n_agents = SIZES[size]
    launched: list[tuple[str, str]] = []

    def recording(module: str, kernel: str, grid: Any, block: Any, args: Any) -> None:
        launched.append((module, kernel))
        launch(module, kernel, grid, block, args)

    generator = np.random.default_rng(1)
    # fields: one LOD step with a conductance and sources/uptake, one without either
    diffusion, decay = [100.0 + 10 * k for k in range(n_fields)], [1e-4] * n_fields
    g = np.ones(shape, dtype=np.float32)
    g[:, :, (3 * shape[2]) // 4] = 0.3
    for conductance, reaction in ((g, True), (None, False)):
        solver = FieldSolver(shape, VOXEL_UM, diffusion, decay, backend=backend, conductance=conductance, cpu_impl="numpy")
        c = xp.asarray(generator.random(solver.field_shape, dtype=np.float32))
        extra = (c * 1e-3, c * 1e-4) if reaction else (None, None)
        _lod_step_kernels(solver, c, 60.0, *extra, recording)
    # blood-pool exchange on a tenth of the voxels
    fields = xp.asarray(generator.random((n_fields, *shape), dtype=np.float32))
    index = xp.asarray(np.flatnonzero(generator.random(int(np.prod(shape))) < 0.1).astype(np.int32))
    blood_sums_kernels(fields, index, recording)
    blood_update_kernels(fields, index, xp.ones(n_fields, dtype=np.float32), xp.full(n_fields, 2.0, dtype=np.float32), recording)
    # agents: moves with chemotaxis and a leaky BBB, wall crossing, division, circulation, contacts
    lattice = Lattice(default_layout(shape, VOXEL_UM), VOXEL_UM)
    store = AgentStore(_kinds(), shape, backend=backend, capacity=2 * n_agents)
    store.launcher = recording
    per_kind = n_agents // 4
    for name, home in (("tumour", "tissue"), ("tcell", "blood"), ("mono", "tissue"), ("tcell", "tissue")):
        store.place_random(name, per_kind, lattice.flat_indices(home), 3, 0, purpose=f"place:{name}:{home}")
    movement = Movement(store, lattice, dt_min=3.0, seed=3)
    integrity = xp.asarray(generator.random(shape, dtype=np.float32))
    movement.step(1, fields[:2], integrity)
    movement.transmigrate(1)
    movement.divide(store.kind == 1, 1, "divide")
    store.contact_counts(6)
    blood = BloodCirculation(store, lattice, dt_min=3.0, seed=3, scale=1e-4)
    blood.infuse("tcell", 1e6)
    blood.exchange(1)
    voxels = store.flat_index()
    scatter.add_weights(fields[0].reshape(-1), voxels, xp.ones(store.n, dtype=np.float64), 1e-3, launcher=recording)
    scatter.add_weights(xp.zeros(fields[0].size, dtype=np.float64), voxels, xp.ones(store.n, dtype=np.float64), 1e-3, launcher=recording)
    scatter.gather(fields.reshape(n_fields, -1), voxels, launcher=recording)
    rng_compiled.random_bits_kernel(xp, 5, 1, store.id, "driver", launcher=recording)
    recording("rng", "spin", (1,), (1,), (1000,))  # 1 µs: the tests' busy-wait kernel
    return launched


class EventTimer:
    """A launcher that brackets each launch with a pair of CUDA events (read after the run: no sync per launch).

    Events time the stream, not the kernel: on an idle GPU the start event fires at once and
    the host's own work before the launch (argument checks, ~25-100 µs) would be counted. So
    a ``spin`` kernel of ``lead_ns`` is queued first; while it runs the host queues the start
    event, the launch and the end event, and the pair then brackets the kernel alone.
    """

    def __init__(self, cupy: Any, launch: kernels.Launcher, lead_ns: int = 500_000) -> None:
        self.cupy, self.launch, self.lead_ns = cupy, launch, lead_ns
        self.events: list[tuple[str, Any, Any]] = []

    def __call__(self, module: str, kernel: str, grid: Any, block: Any, args: Any) -> None:
        start, end = self.cupy.cuda.Event(), self.cupy.cuda.Event()
        self.launch("rng", "spin", (1,), (1,), (self.lead_ns,))
        start.record()
        self.launch(module, kernel, grid, block, args)
        end.record()
        self.events.append((f"{module}.{kernel}", start, end))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per kernel: launches, total and mean GPU milliseconds (synchronises once)."""
        self.cupy.cuda.Device().synchronize()
        result: dict[str, dict[str, float]] = {}
        for name, start, end in self.events:
            entry = result.setdefault(name, {"launches": 0, "total_ms": 0.0})
            entry["launches"] += 1
            entry["total_ms"] += float(self.cupy.cuda.get_elapsed_time(start, end))
        for entry in result.values():
            entry["mean_ms"] = entry["total_ms"] / entry["launches"]
        return result


def missing(launched: list[tuple[str, str]]) -> list[str]:
    """Kernels of the sources that ``launched`` never reached."""
    return sorted(f"{m}.{k}" for m, k in all_kernels() - set(launched))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, drive every kernel on the GPU, print (and write) what ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--repeats", type=int, default=1, metavar="N", help="run the whole sequence N times (default 1)")
    parser.add_argument("--timings", type=Path, default=None, metavar="FILE", help="write per-kernel CUDA-event timings (JSON)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.timings is not None and args.timings.exists():
        parser.exit(2, f"gpu_kernels: error: --timings {args.timings} exists; name a new file\n")
    from carabm.engine.backend import get_backend  # noqa: PLC0415
    from carabm.errors import CarabmError  # noqa: PLC0415

    try:
        backend = get_backend("cupy")
    except CarabmError as exc:
        parser.exit(2, f"gpu_kernels: error: {exc}\n")
    cupy = backend.xp
    if args.timings is not None:
        drive(cupy, kernels.launch, "small", backend="cupy")  # compiles every module: no NVRTC inside the timings
    timer = EventTimer(cupy, kernels.launch)
    launcher: Callable[..., None] = timer if args.timings is not None else kernels.launch
    launched: list[tuple[str, str]] = []
    for _ in range(args.repeats):
        launched += drive(cupy, launcher, args.size, backend="cupy")
    cupy.cuda.Device().synchronize()
    print(f"gpu_kernels: {len(launched)} launches of {len(set(launched))} kernels at --size {args.size} on {backend.device}")
    if args.timings is not None:
        timings = timer.summary()
        for name, entry in sorted(timings.items(), key=lambda item: -item[1]["total_ms"]):
            print(f"  {name:<36} {entry['launches']:>4} launches  {entry['mean_ms']:9.4f} ms mean  {entry['total_ms']:9.3f} ms total")
        document = {"size": args.size, "device": backend.device, "shape": SIZES[args.size][0],
                    "fields": SIZES[args.size][1], "agents": SIZES[args.size][2], "kernels": timings}  # fmt: skip
        args.timings.write_text(json.dumps(document, indent=1) + "\n")
    absent = missing(launched)
    if absent:
        print(f"gpu_kernels: error: never launched: {', '.join(absent)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
