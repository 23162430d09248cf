"""Run VALIDATION.md's scenario set and write a report: the model's numbers beside the
clinical and mouse references, one PASS/FAIL row per fact, and PNG plots.

    python scripts/validate.py --out validation/            # quickstart size (CPU, ~10 min on 2 cores)
    python scripts/validate.py --full --backend cupy --out validation_full/   # default.yaml, GPU

Each scenario runs with several seeds; a fact passes when it holds for every seed.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from carabm.validation import DOSE_SERIES, FACTS, SCENARIOS, first_day, run_series

ROOT = Path(__file__).parents[1]
REFERENCES = [
    ("CRS onset / duration, axi-cel", "median day 2 (range 1-12) / 7 days", "Yescarta prescribing information"),
    ("Neurotoxicity onset / duration, axi-cel", "median day 4 / 17 days", "Yescarta prescribing information"),
    ("CRS and neurotoxicity onset, tisa-cel (JULIET)", "CRS day 3; neurotoxicity day 6", "Schuster, NEJM 2019"),
    ("CAR-T expansion", "100-100,000-fold; axi-cel median peak 16 CAR-T/uL", "Teachey, Cancer Discov 2016; Blood Adv 2021;5:2523"),
    ("Mouse CRS", "onset day 2-3; macrophage IL-6/IL-1-driven", "Giavridis, Nat Med 2018"),
    ("Humanised mice", "monocyte depletion or tocilizumab prevent CRS; anakinra prevents CRS and neurotoxicity", "Norelli, Nat Med 2018"),
    ("GM-CSF blockade", "CRS prevented, less CNS infiltration, tumour control kept", "Sterner, Blood 2019"),
    ("CSF in neurotoxicity", "IL-6, MCP-1 enriched; barrier disruption tracks grade", "Santomasso, Cancer Discov 2018"),
]


def _job(args: tuple[str, str, list[str], int, str]) -> tuple[str, int, dict[str, np.ndarray]]:
    name, config, overrides, seed, backend = args
    return name, seed, run_series(config, overrides, seed, backend)


def summarise(s: dict[str, np.ndarray]) -> dict[str, float]:
    """The headline numbers of one run."""
    cart = s["counts/cart"]
    return {
        "CRS onset (day)": first_day(s, "crs_grade", 1),
        "max CRS": s["crs_grade"].max(),
        "ICANS onset (day)": first_day(s, "icans_grade", 1),
        "max ICANS": s["icans_grade"].max(),
        "peak serum IL-6 (pg/mL)": s["serum/IL6"].max(),
        "peak CNS IL-6 (pg/mL)": s["cns/IL6"].max(),
        "CAR-T peak day": s["time_h"][int(np.argmax(cart))] / 24.0,
        "CAR-T fold expansion": cart.max() / max(cart[0], 1.0),
        "peak CAR-T in blood (/uL)": s["blood_per_ul/cart"].max(),
        "tumour at end (% of start)": 100.0 * s["tumor_burden"][-1] / max(s["tumor_burden"][0], 1.0),
        "min BBB integrity": s["bbb_integrity"].min(),
    }


def plot(results: dict[str, dict[int, dict[str, np.ndarray]]], out: Path) -> list[str]:
    """PNG plots of the scenarios (first seed): serum IL-6, grades, CAR-T, tumour, BBB, CNS IL-6."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [("serum/IL6", "serum IL-6 (pg/mL)", True), ("cns/IL6", "CNS IL-6 (pg/mL)", True),
              ("crs_grade", "CRS grade (model surrogate)", False), ("icans_grade", "ICANS grade (model surrogate)", False),
              ("counts/cart", "CAR-T cells (lattice + pool)", True), ("tumor_burden", "B cells (tumour)", False),
              ("bbb_integrity", "BBB integrity (1 = intact)", False), ("vascular_leak", "systemic leak (0..1)", False)]  # fmt: skip
    fig, axes = plt.subplots(4, 2, figsize=(12, 13), sharex=True)
    for ax, (key, label, log) in zip(axes.ravel(), panels):
        for name, by_seed in results.items():
            s = by_seed[min(by_seed)]
            ax.plot(s["time_h"] / 24.0, np.maximum(s[key], 1e-3) if log else s[key], label=name)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("day after infusion")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("carabm validation scenarios (first seed of each)")
    fig.tight_layout()
    path = out / "scenarios.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path.name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="validation", help="report folder")
    parser.add_argument("--full", action="store_true", help="configs/default.yaml at full size (GPU advised)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "auto"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = str(ROOT / "configs" / ("default.yaml" if args.full else "quickstart.yaml"))
    reduced: list[str] = []
    scenarios = {**SCENARIOS, **DOSE_SERIES}
    jobs = [(name, config, reduced + overrides, 1 + seed, args.backend) for name, overrides in scenarios.items()
            for seed in range(args.seeds if name in SCENARIOS else 1)]  # fmt: skip
    started = time.perf_counter()
    results: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    with ProcessPoolExecutor(max_workers=max(1, args.workers if args.backend == "numpy" else 1)) as pool:
        for name, seed, series in pool.map(_job, jobs):
            results.setdefault(name, {})[seed] = series
            print(f"  {name} seed {seed}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    lines = ["# carabm validation report", "",
             f"Config: `{Path(config).name}`; seeds per scenario: {args.seeds}; "
             f"backend: {args.backend}; wall time {time.perf_counter() - started:.0f} s.",
             "All grades are model surrogates of the ASTCT grades.", "", "## Facts of VALIDATION.md", "",
             "| fact | result | model's numbers (each seed) |", "|---|---|---|"]  # fmt: skip
    all_pass = True
    for fact in FACTS:
        outcomes = [fact.check(*[results[name][seed] for name in fact.scenarios]) for seed in sorted(results[fact.scenarios[-1]])]
        passed = all(ok for ok, _ in outcomes)
        all_pass &= passed
        numbers = "<br>".join(text for _, text in outcomes)
        lines.append(f"| {fact.number}. {fact.text} | {'PASS' if passed else 'FAIL'} | {numbers} |")
    lines += ["", "## Scenario summaries (mean over seeds)", ""]
    keys = list(summarise(results["standard"][1]))
    lines += ["| scenario | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, by_seed in results.items():
        values = [summarise(s) for s in by_seed.values()]
        lines.append(f"| {name} | " + " | ".join(f"{np.mean([v[k] for v in values]):.3g}" for k in keys) + " |")
    lines += ["", "## Clinical and mouse reference numbers", "", "| fact | reference | source |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in REFERENCES]
    lines += ["", "## Plots", ""] + [f"![scenarios]({name})" for name in plot(results, out)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'}: {'all facts PASS' if all_pass else 'some facts FAIL'}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    raise SystemExit(main())
