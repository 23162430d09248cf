"""Benchmark: agent-steps/s of random walk + exclusion + contacts, carabm engine vs a Mesa model.

Each case puts n agents on a cubic lattice at 30 % occupancy; one step moves every agent
(hop probability 1, one cell per voxel, conflicts resolved by priority) and counts each
agent's occupied 6-neighbours. The reference is the same rule written cell by cell with
Mesa's grid (``OrthogonalVonNeumannGrid``, capacity 1), measured in the same run at the
sizes Mesa reaches; larger carabm cases are compared with Mesa's largest measured size
(Mesa's cost per agent-step does not fall with n).

    python scripts/bench_agents.py --size small|medium|large [--backend numpy|cupy|auto]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.backend import get_backend
from carabm.engine.lattice import Lattice
from carabm.engine.movement import Movement

OCCUPANCY = 0.3
VOXEL_UM, DT_MIN, SPEED_UM_MIN = 10.0, 1.0, 10.0  # hop probability 1

# size -> (carabm cases {n: steps}, mesa cases {n: steps})
SIZES = {
    "small": ({10_000: 20, 100_000: 5, 1_000_000: 3}, {10_000: 2}),
    "medium": ({10_000: 50, 100_000: 20, 1_000_000: 10}, {10_000: 5, 100_000: 1}),
    "large": ({10_000: 100, 100_000: 50, 1_000_000: 20, 4_000_000: 5}, {10_000: 10, 100_000: 3}),
}


def side_for(n: int) -> int:
    return int(round((n / OCCUPANCY) ** (1 / 3)))


def bench_carabm(n: int, steps: int, backend_name: str) -> dict:
    backend = get_backend(backend_name)
    side = side_for(n)
    shape = (side, side, side)
    lattice = Lattice(np.zeros(shape, dtype=np.uint8), VOXEL_UM)
    store = AgentStore([KindSpec("walker", speed_um_min=SPEED_UM_MIN)], shape, backend=backend, capacity=n)
    flat = np.random.default_rng(0).choice(lattice.n_voxels, n, replace=False)
    store.add("walker", np.stack(np.unravel_index(flat, shape), axis=1))
    movement = Movement(store, lattice, dt_min=DT_MIN, seed=1)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="numpy")
    args = parser.parse_args()
    backend = get_backend(args.backend)
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
    print(json.dumps({"bench": "agents", "backend": backend.name, "device": backend.device, "cases": cases}))


if __name__ == "__main__":
    main()
