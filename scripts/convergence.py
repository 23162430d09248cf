"""Convergence: the same patient on the quickstart lattice and on a larger one, over seeds.

Runs ``configs/quickstart.yaml`` and the same patient on a lattice ``--factor`` times larger,
for each seed, and compares the distributions of the clinical readouts side by side: mean,
standard deviation, a 95 % confidence interval of the difference of the means (Welch) and
Welch's two-sample t-test. Writes one JSON line (``--json``, default stdout) and a markdown
table (``--markdown``). A readout "agrees" when the 95 % interval of the difference holds 0 or
the two samples are identical; with few seeds that interval is wide, so read the ratio of the
means and the standard deviations too.

Two ways to make the lattice larger (``--mode``); both keep the tissue's vessels as they are
(the quickstart's vessel radius, and a grid of vessels ``lattice.layout.vessel_spacing_um``
apart, the quickstart's tissue-block width, so a larger block holds more vessels rather than a
wider one) and scale every agent count at t = 0 with the volume (``per_tumour_cell`` types
follow the tumour by themselves), so the lattice stands for more of the patient:

* ``axis`` (default): ``factor`` times along every axis. Along x the layout is a sequence
  (tissue block | brain-vessel slab | BBB | CNS): the tissue block and the CNS grow, the slab
  grows with them, the BBB stays one cell layer. The slab borders the tissue block, so the
  tissue's blood interface per volume changes (the slab's face grows as y z, the block as x y z).
* ``tile``: ``factor`` times along z and y only, the quickstart's x sequence unchanged: the
  same tissue, vessels and CNS repeated side by side (``factor**2`` times the volume).
* ``dt``: not a larger lattice but a finer time step: the quickstart at ``run.dt_min / factor``.
  A lattice walker hops at most once per step, so a finer step would also let the fast walkers
  (CAR-T cells, monocytes) move faster; ``dt`` holds every speed at what the coarse step resolves
  (``min(v, hop / dt)``), so that only the time discretisation differs (fields, rates, exchange).
* ``dt-speed``: the same finer step with the speeds as configured: the motility the step resolves
  changes too (``carabm validate`` names the capped speeds).
* ``mirror``: ``factor`` times along every axis as a larger sample of the same tissue: the
  quickstart's lattice repeated along z and y and, along x, alternately as it is and mirrored
  (tissue | brain vessel | BBB | CNS | CNS | BBB | brain vessel | tissue for 2), written as a
  label mask (``lattice.layout.kind: mask``). Every voxel keeps the neighbourhood it has on the
  quickstart: the tissue block keeps its depth and its blood interface per volume, and the
  mirror plane is the quickstart's closed outer face seen from both sides (``factor**3``).

    python scripts/convergence.py --seeds 1 2 3 4 --duration-h 336 --jobs 2 --mode tile --markdown conv.md
    python scripts/convergence.py --seeds 1 2 3 4 5 6 7 8 --jobs 2 --mode mirror --markdown conv.md
    python scripts/convergence.py --seeds 1 2 3 4 --jobs 2 --mode dt --markdown conv_dt.md

The larger lattice costs about its volume factor times a quickstart run, the finer step its factor.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from carabm.biology.model import kind_specs, walk_speed_limit_um_min
from carabm.io.catalog import CATALOG
from carabm.io.config import default_labels, load_config
from carabm.validation import first_day, run_series

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
#: the readouts compared, with their labels (days are days after infusion)
READOUTS = {
    "peak_il6_pg_ml": "peak serum IL-6 [pg/mL]",
    "max_crs_grade": "max CRS grade",
    "crs_onset_day": "CRS onset (grade >= 1) [day]",
    "max_icans_grade": "max ICANS grade",
    "icans_onset_day": "ICANS onset (grade >= 1) [day]",
    "cart_peak_day": "CAR-T peak [day]",
    "cart_fold": "CAR-T expansion [fold]",
    "tumour_left": "tumour left at the end [fraction]",
}


MODES = ("axis", "tile", "mirror", "dt", "dt-speed")


def mirrored_labels(lattice: Any, factor: int = 2) -> np.ndarray:
    """A config's ``lattice`` (default layout) as labels ``factor`` times along z and y, and along x alternately as they are and mirrored."""
    if lattice.layout.kind != "default":
        raise ValueError(f"mirror: needs the default layout, got lattice.layout.kind {lattice.layout.kind!r}")
    tiled = np.tile(np.asarray(default_labels(lattice)), (factor, factor, 1))
    return np.ascontiguousarray(np.concatenate([tiled if i % 2 == 0 else tiled[:, :, ::-1] for i in range(factor)], axis=2))


def larger_overrides(config: Path = QUICKSTART, factor: int = 2, mode: str = "axis", settings: list[str] | tuple[str, ...] = (),
                     mask_file: Path | None = None) -> list[str]:  # fmt: skip
    """``--set`` overrides for the same patient on a lattice ``factor`` times larger (``mode``: one of :data:`MODES`).

    The tissue keeps its vessels: their radius, and a grid of them one quickstart tissue-block
    width apart; every placed cell type's t = 0 count scales with the volume
    (``per_tumour_cell`` types follow the tumour by themselves), and so does every infused
    type's ``min_agents`` (the same weight per agent). ``settings``: ``--set`` overrides
    of both lattices, applied before these. ``mirror`` writes its label mask to ``mask_file``.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    base = load_config(config, list(settings), check_memory=False)
    if mode in ("dt", "dt-speed"):
        return finer_step_overrides(base, factor, hold_speeds=mode == "dt")
    if mode == "mirror":
        if mask_file is None:
            raise ValueError("mirror: a mask_file to write the larger lattice's labels to is needed")
        labels = mirrored_labels(base.lattice, factor)
        np.save(mask_file, labels)
        out = [f"lattice.shape=[{','.join(str(n) for n in labels.shape)}]", "lattice.layout.kind=mask", f"lattice.layout.file={mask_file}"]
        return out + _scaled_counts(base, factor**3)
    lat, layout = base.lattice, base.lattice.layout
    nz, ny, nx = lat.shape
    block_um = round(nx * layout.tissue_fraction) * lat.voxel_um
    if layout.vessel_spacing_um is None and ny * lat.voxel_um != block_um:
        raise ValueError(f"the tissue block is {ny * lat.voxel_um:g} x {block_um:g} um (y x): a square vessel grid cannot repeat it")
    spacing = layout.vessel_spacing_um or block_um
    per_axis = (factor, factor, factor if mode == "axis" else 1)
    out = [f"lattice.shape=[{','.join(str(n * f) for n, f in zip(lat.shape, per_axis))}]",
           f"lattice.layout.vessel_spacing_um={spacing:g}"]  # fmt: skip
    if mode == "axis":
        out.append(f"lattice.layout.brain_vessel_width_um={layout.brain_vessel_width_um * factor:g}")
    return out + _scaled_counts(base, per_axis[0] * per_axis[1] * per_axis[2])


def finer_step_overrides(base: Any, factor: int, hold_speeds: bool = True) -> list[str]:
    """``--set`` overrides for the same patient at ``run.dt_min / factor``; ``hold_speeds``: every speed at what ``base``'s step resolves.

    The walk hops at most once per step (``p = min(1, v dt / hop)``), so a speed ``v`` above
    ``hop / dt`` moves at ``hop / dt``; held there, the finer step walks as the coarse one does.
    """
    out = [f"run.dt_min={base.run.dt_min / factor:.10g}"]
    if hold_speeds:
        top = walk_speed_limit_um_min(base)
        out += [f"cells.{spec.name}.speed_um_min={top:.10g}" for spec in kind_specs(base) if spec.speed_um_min > top]
    return out


def _scaled_counts(base: Any, volume: int) -> list[str]:
    """Overrides of every placed cell type's fixed t = 0 count, ``volume`` times the config's.

    Also every infused type's fewest agents (``min_agents``): the larger lattice receives
    ``volume`` times the cells, and the same weight per agent keeps the sampling the same
    (with the same number of agents they would be ``volume`` times heavier, a coarser patient).
    """
    out = []
    for name, cell in CATALOG.cell_types.items():
        section = getattr(base.cells, name)
        if cell.placed and getattr(section, "per_tumour_cell", None) is None and section.initial_count:
            out.append(f"cells.{name}.initial_count={section.initial_count * volume}")
        if getattr(section, "min_agents", None):
            out.append(f"cells.{name}.min_agents={section.min_agents * volume}")
    return out


def readouts(s: dict[str, np.ndarray]) -> dict[str, float]:
    """The compared readouts of one run's time series (``inf``: never reached)."""
    cart = s.get("cells/cart", s["counts/cart"])
    peak = int(np.argmax(cart))
    burden = s["tumor_burden"]
    return {
        "peak_il6_pg_ml": float(s["serum/IL6"].max()),
        "max_crs_grade": float(s["crs_grade"].max()),
        "crs_onset_day": first_day(s, "crs_grade", 1),
        "max_icans_grade": float(s["icans_grade"].max()),
        "icans_onset_day": first_day(s, "icans_grade", 1),
        "cart_peak_day": float(s["time_h"][peak] / 24.0),
        "cart_fold": float(cart[peak] / cart[0]) if cart[0] > 0 else float("nan"),
        "tumour_left": float(burden[-1] / max(burden[0], 1)),
    }


def _one(job: tuple[str, list[str], int]) -> tuple[str, int, dict[str, float], float]:
    label, overrides, seed = job
    start = time.perf_counter()
    series = run_series(QUICKSTART, overrides, seed=seed)
    return label, seed, readouts(series), time.perf_counter() - start


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean and sd of each sample, the 95 % CI of ``mean(b) - mean(a)`` (Welch) and Welch's p; ``agrees`` when the CI holds 0."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    finite = np.isfinite(x).all() and np.isfinite(y).all()
    if not finite:  # e.g. an onset that some runs never reach: compare how often it is reached
        fx, fy = x[np.isfinite(x)], y[np.isfinite(y)]
        return {"a_mean": float(fx.mean()) if fx.size else None, "b_mean": float(fy.mean()) if fy.size else None,
                "a_sd": None, "b_sd": None, "a_reached": int(fx.size), "b_reached": int(fy.size), "n": int(x.size),
                "p": None, "ci": None, "agrees": bool(fx.size == fy.size)}  # fmt: skip
    out: dict[str, Any] = {"a_mean": float(np.mean(x)), "b_mean": float(np.mean(y)),
                           "a_sd": float(np.std(x, ddof=1)) if x.size > 1 else 0.0,
                           "b_sd": float(np.std(y, ddof=1)) if y.size > 1 else 0.0}  # fmt: skip
    if np.ptp(np.concatenate([x, y])) == 0.0:
        out.update(p=1.0, ci=[0.0, 0.0], agrees=True)
        return out
    va, vb = np.var(x, ddof=1) / x.size, np.var(y, ddof=1) / y.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / ((va**2 / (x.size - 1) if va else 0.0) + (vb**2 / (y.size - 1) if vb else 0.0) or 1e-300)
    half = float(stats.t.ppf(0.975, max(dof, 1.0))) * se
    diff = float(np.mean(y) - np.mean(x))
    p = float(stats.ttest_ind(x, y, equal_var=False).pvalue) if se > 0 else 1.0
    out.update(p=p, ci=[diff - half, diff + half], agrees=bool(diff - half <= 0.0 <= diff + half))
    return out


def markdown(rows: dict[str, dict[str, Any]], factor: int, seeds: list[int], duration_h: float, mode: str = "axis") -> str:
    """The side-by-side table."""
    big, volume = {"axis": (f"{factor}x per axis", factor**3), "tile": (f"tiled {factor}x along z and y", factor**2),
                   "mirror": (f"{factor}x per axis, mirrored along x", factor**3), "dt": (f"time step / {factor}", 1),
                   "dt-speed": (f"time step / {factor}, speeds as configured", 1)}[mode]  # fmt: skip
    title = (f"the same patient on a lattice {big} ({volume}x the volume and agents)" if volume > 1 else
             f"the same patient at 1/{factor} of the quickstart's time step"
             + (" (speeds held at what the quickstart's step resolves)" if mode == "dt" else " (speeds as configured)"))  # fmt: skip
    lines = [f"Convergence over seeds {seeds}, {duration_h:g} h: quickstart vs {title}", "",
             f"| readout | quickstart mean ± sd | {big} mean ± sd | ratio | 95 % CI of the difference | Welch p | agrees |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, label in READOUTS.items():
        r = rows[key]
        ci = "n/a" if r["ci"] is None else f"[{r['ci'][0]:.3g}, {r['ci'][1]:.3g}]"
        p = "n/a" if r["p"] is None else f"{r['p']:.2f}"
        ratio = "n/a" if "n" in r or not r["a_mean"] else f"{r['b_mean'] / r['a_mean']:.2f}"
        if "n" in r:  # some runs never reached it
            a = f"reached {r['a_reached']}/{r['n']}" + (f", mean {r['a_mean']:.3g}" if r["a_mean"] is not None else "")
            b = f"reached {r['b_reached']}/{r['n']}" + (f", mean {r['b_mean']:.3g}" if r["b_mean"] is not None else "")
        else:
            a, b = f"{r['a_mean']:.3g} ± {r['a_sd']:.2g}", f"{r['b_mean']:.3g} ± {r['b_sd']:.2g}"
        lines.append(f"| {label} | {a} | {b} | {ratio} | {ci} | {p} | {'yes' if r['agrees'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run both lattices over the seeds and write the JSON line and the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--factor", type=int, default=2, help="lattice size factor per axis, or time-step divisor (dt modes; default 2)")
    parser.add_argument("--mode", choices=MODES, default="axis",
                        help="axis: factor times along every axis (a deeper tissue block); tile: along z and y only, the x sequence "
                             "kept; mirror: factor times along every axis, the x sequence mirrored; dt: the time step / factor, "
                             "speeds held at what the quickstart's step resolves; dt-speed: the same with the speeds as "
                             "configured (default axis)")  # fmt: skip
    parser.add_argument("--duration-h", type=float, default=336.0, help="simulated hours per run (default 336, the quickstart's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override of both lattices (e.g. a layout option), applied before the larger lattice's own")  # fmt: skip
    parser.add_argument("--json", type=Path, help="append the JSON line here (default: stdout)")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here (default: stdout)")
    args = parser.parse_args(argv)
    common = [*args.set, f"run.duration_h={args.duration_h:g}"]
    results: dict[str, dict[int, dict[str, float]]] = {"quickstart": {}, "larger": {}}
    wall: dict[str, float] = {"quickstart": 0.0, "larger": 0.0}
    with tempfile.TemporaryDirectory(prefix="carabm-convergence-") as scratch:  # the mirror mode's label mask
        mask = Path(scratch) / "larger_labels.npy"
        larger = common + larger_overrides(factor=args.factor, mode=args.mode, settings=args.set, mask_file=mask)
        jobs = [("quickstart", common, s) for s in args.seeds] + [("larger", larger, s) for s in args.seeds]
        with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            for label, seed, values, seconds in pool.map(_one, jobs):
                results[label][seed] = values
                wall[label] += seconds
                print(f"{label} seed {seed}: {json.dumps(values)} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    rows = {key: compare([results["quickstart"][s][key] for s in args.seeds], [results["larger"][s][key] for s in args.seeds])
            for key in READOUTS}  # fmt: skip
    runs = {label: {seed: {k: (v if math.isfinite(v) else None) for k, v in values.items()} for seed, values in by_seed.items()}
            for label, by_seed in results.items()}  # fmt: skip  (JSON has no inf: never reached -> null)
    line = json.dumps({"factor": args.factor, "mode": args.mode, "set": args.set, "seeds": args.seeds, "duration_h": args.duration_h, "wall_s": wall,
                       "runs": runs, "comparison": rows})  # fmt: skip
    if args.json:
        with args.json.open("a") as f:
            f.write(line + "\n")
    else:
        print(line)
    table = markdown(rows, args.factor, args.seeds, args.duration_h, args.mode)
    if args.markdown:
        args.markdown.write_text(table)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
