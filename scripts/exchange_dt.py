"""Time-step convergence of the tissue-to-serum transfer: the fields and the blood pool alone, no cell rules.

A constant source of one cytokine in every tissue voxel of a config's lattice (the quickstart's by
default); the serum level after ``--hours`` at each step in ``--steps`` (minutes), by

* ``present``: carabm's scheme (``BloodPool.step``: the exchange of the blood voxels with the pool,
  the reaction and the LOD diffusion solves, then the capillary exchange of the tissue voxels);
* ``unsplit``: a reference that solves reaction, diffusion, the blood voxels' exchange and the
  capillary exchange as sinks in one implicit system (scipy.sparse LU; the pool semi-implicit).

A converged scheme gives the same serum at every step. docs/model.md ("Time step") has the
measurements and what they mean. Prints a table, then one JSON line.

    python scripts/exchange_dt.py --steps 12 6 3 1.5 0.75 --hours 12
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from carabm.engine.fields import face_conductance
from carabm.engine.lattice import BLOOD, TISSUE
from carabm.io.config import load_config
from carabm.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]


def _model(config: Path, dt_min: float, settings: list[str]):  # noqa: ANN202
    return Simulation(load_config(config, [*settings, f"run.dt_min={dt_min:g}"]), "numpy").model


def present(config: Path, dt_min: float, hours: float, cytokine: str, source: float, settings: list[str]) -> float:
    """Serum [pg/mL] after ``hours`` of the source, by carabm's own field and blood-pool step."""
    m = _model(config, dt_min, settings)
    k = m.index[cytokine]
    sources = m.solver.zeros()
    sources[k][m.lattice.labels == TISSUE] = source
    fields = m.solver.zeros()
    for _ in range(round(hours * 60.0 / dt_min)):
        fields = m.blood.step(fields, dt_min * 60.0, sources, None, np.zeros(len(m.index)))
    return float(m.blood.serum_pg_ml[k])


def unsplit(config: Path, dt_min: float, hours: float, cytokine: str, source: float, settings: list[str]) -> float:
    """Serum [pg/mL] after ``hours``: reaction, diffusion (carabm's face conductances) and both exchanges in one implicit solve."""
    m = _model(config, dt_min, settings)
    solver, pool = m.solver, m.blood
    k = m.index[cytokine]
    shape, n = solver.shape, int(np.prod(solver.shape))
    g = np.asarray(solver.conductance[k if solver.conductance.shape[0] > 1 else 0], dtype=np.float64)
    coefficient = float(solver.diffusion_um2_s[k]) / solver.voxel_um**2
    index = np.arange(n).reshape(shape)
    rows, cols, values, diagonal = [], [], [], np.zeros(n)
    for axis in range(3):
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        a, b = g[tuple(lo)], g[tuple(hi)]
        face = (face_conductance(a, b) * coefficient).ravel()
        i, j = index[tuple(lo)].ravel(), index[tuple(hi)].ravel()
        rows += [i, j]
        cols += [j, i]
        values += [-face, -face]
        np.add.at(diagonal, i, face)
        np.add.at(diagonal, j, face)
    laplacian = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)) + sp.diags(diagonal)
    blood = (m.lattice.labels == BLOOD).ravel().astype(np.float64)
    capillary = np.zeros(n)
    capillary[solver.backend.asnumpy(pool.capillary_index)] = pool.capillary_rate_per_s[k]
    dt = dt_min * 60.0
    decay, clearance, exchange = float(solver.decay_per_s[k]), float(pool.clearance_per_s[k]), pool.exchange_per_s
    sink = exchange * blood + capillary  # 1/s per voxel, towards the serum
    system = spla.splu((sp.identity(n) * (1.0 + dt * decay) + sp.diags(dt * sink) + dt * laplacian).tocsc())
    tissue_source = np.where((m.lattice.labels == TISSUE).ravel(), source, 0.0)
    c, serum = np.zeros(n), 0.0
    v, volume = pool.voxel_volume_ml, pool.pool_volume_ml
    for _ in range(round(hours * 60.0 / dt_min)):
        c = system.solve(c + dt * tissue_source + dt * sink * serum)
        serum = (volume * serum + dt * v * float(sink @ c)) / (volume * (1.0 + dt * clearance) + dt * v * sink.sum())
    return serum


def main(argv: list[str] | None = None) -> int:
    """Both schemes at every step; the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    parser.add_argument("--steps", type=float, nargs="+", default=[12.0, 6.0, 3.0, 1.5], help="time steps [min]")
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours per run (default 12)")
    parser.add_argument("--cytokine", default="GMCSF", help="the field that gets the source (default GMCSF)")
    parser.add_argument("--source", type=float, default=1e-3, help="source in every tissue voxel [pg/mL/s] (default 1e-3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    args = parser.parse_args(argv)
    if min(args.steps) <= 0 or args.hours <= 0:
        parser.error("--steps and --hours must be > 0")
    start = time.perf_counter()
    rows = []
    for dt in args.steps:
        rows.append({"dt_min": dt, "present": present(args.config, dt, args.hours, args.cytokine, args.source, args.set),
                     "unsplit": unsplit(args.config, dt, args.hours, args.cytokine, args.source, args.set)})  # fmt: skip
        print(f"step {dt:g} min: serum {rows[-1]['present']:.4g} (present scheme), {rows[-1]['unsplit']:.4g} pg/mL (unsplit)",
              file=sys.stderr, flush=True)  # fmt: skip
    print(f"Serum {args.cytokine} [pg/mL] after {args.hours:g} h of {args.source:g} pg/mL/s in every tissue voxel ({args.config.name})\n")
    print("| step [min] | present scheme | unsplit implicit |\n|---|---|---|")
    for r in rows:
        print(f"| {r['dt_min']:g} | {r['present']:.4g} | {r['unsplit']:.4g} |")
    print(json.dumps({"check": "exchange_dt", "config": str(args.config), "cytokine": args.cytokine, "hours": args.hours,
                      "source_pg_ml_s": args.source, "rows": rows, "wall_s": round(time.perf_counter() - start, 2)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
