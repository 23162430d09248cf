"""Benchmark: agent-steps/s of random walk + exclusion + contacts, carabm engine vs an in-run reference.

One step moves every agent (hop probability 1, one cell per voxel, a move only into a voxel
free at the start of the step, conflicts resolved by priority) and counts each agent's
occupied 6-neighbours (``Movement.step`` + ``AgentStore.contact_counts(6)``).

NumPy backend: n agents on a cubic lattice at 30 % occupancy. The reference is the same
rule written cell by cell with Mesa's grid (``OrthogonalVonNeumannGrid``, capacity 1),
measured in the same run at the sizes Mesa reaches; larger carabm cases are compared with
Mesa's largest measured size (Mesa's cost per agent-step does not fall with n).

CuPy backend (``--backend cupy``, or ``auto`` on a GPU machine): 1e5, 1e6 (and at
medium/large 1e7) agents on a 256^3 lattice, with the agents in random order ("unsorted")
and re-sorted by voxel every ``--sort-every`` steps ("sorted", the re-sort included in the
time). Timing by CUDA events after a warm-up. The reference is a naive CuPy version of the
same rule written with array operations (:class:`NaiveWalk`: cupy.random directions,
argsort of (target, random priority) for conflicts, a gather of the occupancy grid for
contacts), measured in the same run; ratio = naive time / carabm time.

    python scripts/bench_agents.py --size small|medium|large [--backend auto|numpy|cupy] [--sort-every N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.backend import Backend, get_backend
from carabm.engine.lattice import Lattice
from carabm.engine.movement import Movement
from carabm.errors import CarabmError

OCCUPANCY = 0.3
VOXEL_UM, DT_MIN, SPEED_UM_MIN = 10.0, 1.0, 10.0  # hop probability 1

# CPU: size -> (carabm cases {n: steps}, mesa cases {n: steps})
SIZES = {
    "small": ({10_000: 20, 100_000: 5, 1_000_000: 3}, {10_000: 2}),
    "medium": ({10_000: 50, 100_000: 20, 1_000_000: 10}, {10_000: 5, 100_000: 1}),
    "large": ({10_000: 100, 100_000: 50, 1_000_000: 20, 4_000_000: 5}, {10_000: 10, 100_000: 3}),
}
# GPU: a 256^3 lattice; size -> {n: timed steps}
GPU_SIDE = 256
GPU_SIZES = {
    "small": {100_000: 100, 1_000_000: 50},
    "medium": {100_000: 200, 1_000_000: 200, 10_000_000: 50},
    "large": {100_000: 1000, 1_000_000: 500, 10_000_000: 200},
}
GPU_WARMUP = 5
#: targets on an H100 (issue "Whole step on the GPU"), ms per step with agents in locality order
TARGET_MS = {1_000_000: 0.3, 10_000_000: 1.0}


def side_for(n: int) -> int:
    return int(round((n / OCCUPANCY) ** (1 / 3)))


def random_voxels(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``n`` distinct voxels ``[n, 3]`` (z, y, x) in random order (host)."""
    flat = np.random.default_rng(seed).choice(int(np.prod(shape)), n, replace=False)
    return np.stack(np.unravel_index(flat, shape), axis=1)


def make_world(position: np.ndarray, shape: tuple[int, int, int], backend: Backend, seed: int = 1) -> tuple[AgentStore, Movement]:
    """A store with walkers at ``position`` (``[n, 3]``, distinct voxels, in that order) and its Movement."""
    lattice = Lattice(np.zeros(shape, dtype=np.uint8), VOXEL_UM)
    store = AgentStore([KindSpec("walker", speed_um_min=SPEED_UM_MIN)], shape, backend=backend, capacity=len(position))
    store.add("walker", position)
    return store, Movement(store, lattice, dt_min=DT_MIN, seed=seed)


def seconds_per_step(backend: Backend, step: Callable[[int], Any], steps: int) -> float:
    """Seconds per call of ``step(i)`` for i in 0..steps-1: CUDA events on a GPU, perf_counter on the CPU."""
    if backend.is_gpu:
        cuda = backend.xp.cuda
        start, end = cuda.Event(), cuda.Event()
        backend.synchronize()
        start.record()
        for i in range(steps):
            step(i)
        end.record()
        end.synchronize()
        return cuda.get_elapsed_time(start, end) / 1e3 / steps
    start_s = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - start_s) / steps


# ---------------------------------------------------------------------------- CPU: carabm vs Mesa
def bench_carabm(n: int, steps: int, backend_name: str) -> dict:
    backend = get_backend(backend_name)
    shape = (side_for(n),) * 3
    store, movement = make_world(random_voxels(n, shape), shape, backend)
    movement.step(0)  # warm-up: compiles the CPU Philox, allocates scratch
    store.contact_counts(6)
    backend.synchronize()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        movement.step(step)
        store.contact_counts(6)
    backend.synchronize()
    seconds = time.perf_counter() - start
    store.check()
    return {"n": n, "steps": steps, "seconds_per_step": seconds / steps, "agent_steps_per_s": n * steps / seconds}


def bench_mesa(n: int, steps: int) -> dict:
    import mesa  # noqa: PLC0415
    from mesa.discrete_space import CellAgent, OrthogonalVonNeumannGrid  # noqa: PLC0415

    class Walker(CellAgent):
        def __init__(self, model, cell):
            super().__init__(model)
            self.cell = cell
            self.contacts = 0

        def step(self):
            if self.random.random() < 1.0:  # hop probability (1 here, as for carabm)
                target = self.cell.neighborhood.select_random_cell()
                if target.is_empty:
                    self.cell = target
            self.contacts = sum(1 for cell in self.cell.neighborhood if not cell.is_empty)

    class WalkModel(mesa.Model):
        def __init__(self, side, n, seed=0):
            super().__init__(seed=seed)
            self.grid = OrthogonalVonNeumannGrid((side, side, side), capacity=1, torus=False, random=self.random)
            for cell in self.random.sample(list(self.grid.all_cells.cells), n):
                Walker(self, cell)

        def step(self):
            self.agents.shuffle_do("step")

    model = WalkModel(side_for(n), n)
    model.step()  # warm-up: builds the neighbourhood caches
    start = time.perf_counter()
    for _ in range(steps):
        model.step()
    seconds = time.perf_counter() - start
    return {"n": n, "steps": steps, "seconds_per_step": seconds / steps, "agent_steps_per_s": n * steps / seconds,
            "version": mesa.__version__}


def run_cpu(args: argparse.Namespace, backend: Backend) -> list[dict]:
    ours_cases, mesa_cases = SIZES[args.size]
    mesa_results = {n: bench_mesa(n, steps) for n, steps in mesa_cases.items()}
    rows, cases = [], []
    for n, steps in ours_cases.items():
        ours = bench_carabm(n, steps, backend.name)
        ref_n = max([m for m in mesa_results if m <= n] or [min(mesa_results)])
        ref = mesa_results[ref_n]
        ratio = ours["agent_steps_per_s"] / ref["agent_steps_per_s"]
        reference = f"mesa-{ref['version']} OrthogonalVonNeumannGrid n={ref_n}"
        rows.append((n, side_for(n), ours, ref_n, ref, ratio))
        cases.append({"case": f"walk+exclusion+contacts n={n:.0e} occupancy=0.3", "value": round(ours["agent_steps_per_s"]),
                      "unit": "agent-steps/s", "reference": reference, "reference_value": round(ref["agent_steps_per_s"]),
                      "ratio": round(ratio, 1), "seconds_per_step": round(ours["seconds_per_step"], 4)})
    print(f"agents benchmark ({args.size}), backend {backend.name} on {backend.device}")
    print(f"{'agents':>10} {'lattice':>8} {'s/step':>9} {'agent-steps/s':>14} | {'mesa n':>8} {'mesa s/step':>12} "
          f"{'mesa a-s/s':>11} | {'speed-up':>8}")
    for n, side, ours, ref_n, ref, ratio in rows:
        print(f"{n:>10,} {side:>5}^3 {ours['seconds_per_step']:>9.4f} {ours['agent_steps_per_s']:>14,.0f} | "
              f"{ref_n:>8,} {ref['seconds_per_step']:>12.4f} {ref['agent_steps_per_s']:>11,.0f} | {ratio:>7.0f}x")
    return cases


# ---------------------------------------------------------------------------- GPU: carabm vs naive CuPy
class NaiveWalk:
    """The same rule as the engine's, written with array operations the way a user would (the GPU reference).

    ``xp`` is ``cupy`` (``numpy`` works too, for tests). The occupancy grid is padded by one
    voxel of -2 (a wall) on every side; -1 is an empty voxel, >= 0 an agent's index. A step
    draws a direction per agent with ``xp.random``, keeps the requests whose target is empty
    at the start of the step, keeps the first request per target after an argsort of
    (target, random priority), and applies the winning moves.
    """

    WALL, EMPTY = -2, -1

    def __init__(self, xp: Any, shape: tuple[int, int, int], position: np.ndarray, seed: int = 2) -> None:
        self.xp = xp
        nz, ny, nx = shape
        self.grid = xp.full((nz + 2, ny + 2, nx + 2), self.WALL, dtype=xp.int32)
        self.grid[1:-1, 1:-1, 1:-1] = self.EMPTY
        sz, sy = (ny + 2) * (nx + 2), nx + 2
        self.offsets_host = [sz, -sz, sy, -sy, 1, -1]
        self.offsets = xp.asarray(self.offsets_host, dtype=xp.int64)
        pos = xp.asarray(position, dtype=xp.int64)
        self.cell = (pos[:, 0] + 1) * sz + (pos[:, 1] + 1) * sy + (pos[:, 2] + 1)  # padded flat index per agent
        self.n = int(self.cell.size)
        self.grid.ravel()[self.cell] = xp.arange(self.n, dtype=xp.int32)
        self.random = xp.random.RandomState(seed)

    def step(self) -> int:
        """Move every agent by one voxel where it can; returns how many moved."""
        xp = self.xp
        grid = self.grid.ravel()
        target = self.cell + self.offsets[self.random.randint(0, 6, size=self.n)]
        request = xp.nonzero(grid[target] == self.EMPTY)[0]  # inside and free at the start of the step
        wanted = target[request]
        priority = self.random.randint(0, 2**31 - 1, size=int(request.size)).astype(xp.int64)
        order = xp.argsort((wanted << 32) | priority)  # by target, then by priority
        sorted_target = wanted[order]
        first = xp.ones(sorted_target.size, dtype=bool)
        first[1:] = sorted_target[1:] != sorted_target[:-1]
        winners = request[order[first]]
        grid[self.cell[winners]] = self.EMPTY
        self.cell[winners] = target[winners]
        grid[self.cell[winners]] = winners.astype(xp.int32)
        return int(winners.size)

    def contacts(self) -> Any:
        """Occupied 6-neighbours of every agent, ``int32 [n]``."""
        xp = self.xp
        grid = self.grid.ravel()
        counts = xp.zeros(self.n, dtype=xp.int32)
        for offset in self.offsets_host:
            counts += grid[self.cell + offset] >= 0
        return counts

    def check(self) -> None:
        """Raise ``AssertionError`` when grid and agents disagree (two agents in a voxel, an agent outside)."""
        xp = self.xp
        grid = self.grid.ravel()
        assert int((self.grid >= 0).sum()) == self.n, "occupied voxels != agents"
        assert bool((grid[self.cell] == xp.arange(self.n)).all()), "grid and agents disagree"
        inner = self.grid[1:-1, 1:-1, 1:-1]
        assert int((self.grid == self.WALL).sum()) == self.grid.size - inner.size, "an agent on the wall"
        assert not bool((inner == self.WALL).any()), "a wall inside the lattice"


def time_carabm(position: np.ndarray, shape: tuple[int, int, int], steps: int, backend: Backend, sort_every: int) -> dict[str, float]:
    """Seconds per step of the engine with agents in the given (random) order, then sorted by voxel every ``sort_every`` steps."""
    store, movement = make_world(position, shape, backend)
    counter = iter(range(1, 2**31))

    def unsorted_step(_: int) -> None:
        movement.step(next(counter))  # no int() on the result: it may be a device scalar
        store.contact_counts(6)

    def sorted_step(i: int) -> None:
        if i % sort_every == 0:
            store.sort_by_voxel()
        unsorted_step(i)

    result = {}
    for label, step in (("unsorted", unsorted_step), ("sorted", sorted_step)):
        seconds_per_step(backend, step, GPU_WARMUP)  # warm-up: compiles kernels, allocates scratch
        result[label] = seconds_per_step(backend, step, steps)
        store.check()  # validation, outside the timing
    return result


def time_naive(position: np.ndarray, shape: tuple[int, int, int], steps: int, backend: Backend) -> float:
    """Seconds per step of :class:`NaiveWalk` (+ its contacts) from the same start."""
    naive = NaiveWalk(backend.xp, shape, position)

    def step(_: int) -> None:
        naive.step()
        naive.contacts()

    seconds_per_step(backend, step, GPU_WARMUP)
    seconds = seconds_per_step(backend, step, steps)
    naive.check()
    return seconds


def free_device_memory(backend: Backend) -> None:
    if backend.is_gpu:
        backend.xp.get_default_memory_pool().free_all_blocks()


def bench_gpu_case(n: int, steps: int, backend: Backend, sort_every: int, side: int = GPU_SIDE) -> dict[str, float]:
    """Seconds per step of carabm (random order; sorted by voxel every ``sort_every`` steps) and of :class:`NaiveWalk`."""
    shape = (side,) * 3
    position = random_voxels(n, shape)
    result = time_carabm(position, shape, steps, backend, sort_every)
    free_device_memory(backend)
    result["naive"] = time_naive(position, shape, steps, backend)
    free_device_memory(backend)
    return result


def run_gpu(args: argparse.Namespace, backend: Backend) -> list[dict]:
    cases, rows = [], []
    reference = "naive CuPy (xp.random directions, argsort conflicts, grid gather contacts)"
    for n, steps in GPU_SIZES[args.size].items():
        r = bench_gpu_case(n, steps, backend, args.sort_every)
        naive = r["naive"]
        for label, name in (("unsorted", "random order"), ("sorted", f"sorted by voxel every {args.sort_every} steps")):
            seconds = r[label]
            case = {"case": f"walk+exclusion+contacts n={n:.0e} lattice={GPU_SIDE}^3 {name}",
                    "value": round(n / seconds), "unit": "agent-steps/s", "reference": reference,
                    "reference_value": round(n / naive), "ratio": round(naive / seconds, 2),
                    "ms_per_step": round(seconds * 1e3, 4), "reference_ms_per_step": round(naive * 1e3, 4)}
            if label == "sorted" and n in TARGET_MS:
                case["target_ms_per_step"] = TARGET_MS[n]
            cases.append(case)
            rows.append((n, label, seconds, naive, TARGET_MS.get(n) if label == "sorted" else None))
    print(f"agents benchmark ({args.size}), backend {backend.name} on {backend.device}, lattice {GPU_SIDE}^3, "
          f"CUDA-event timing after {GPU_WARMUP} warm-up steps")
    print(f"{'agents':>11} {'order':>9} {'ms/step':>9} {'agent-steps/s':>15} | {'naive ms':>9} {'naive a-s/s':>14} | "
          f"{'speed-up':>8} | {'target (H100)':>13}")
    for n, label, seconds, naive, target in rows:
        target_text = f"<= {target:g} ms" if target else ""
        print(f"{n:>11,} {label:>9} {seconds * 1e3:>9.3f} {n / seconds:>15,.0f} | {naive * 1e3:>9.3f} {n / naive:>14,.0f} | "
              f"{naive / seconds:>7.2f}x | {target_text:>13}")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    parser.add_argument("--sort-every", type=int, default=20, metavar="N", help="GPU: re-sort agents by voxel every N steps (default 20)")
    args = parser.parse_args()
    if args.sort_every < 1:
        parser.error("--sort-every must be >= 1")
    try:
        backend = get_backend(args.backend)
    except CarabmError as exc:
        print(f"bench_agents: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    cases = run_gpu(args, backend) if backend.is_gpu else run_cpu(args, backend)
    print(json.dumps({"bench": "agents", "backend": backend.name, "device": backend.device, "cases": cases}))


if __name__ == "__main__":
    main()
