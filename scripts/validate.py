"""Run VALIDATION.md's scenario set and write a report: the model's numbers beside the
clinical and mouse references, one PASS/FAIL row per fact, and PNG plots.

    python scripts/validate.py --out validation/            # quickstart size (CPU, ~5 min on 2 idle cores, 3 seeds)
    python scripts/validate.py --full --backend cupy --out validation_full/   # default.yaml, GPU

Each scenario runs with several seeds; a fact passes when it holds for every seed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from carabm.validation import (
    BURDEN_SERIES,
    DOSE_SERIES,
    FACTS,
    SCENARIOS,
    SERIES_H,
    SMOOTH_MIN_FOLD,
    cart_cells,
    days_at_or_above,
    first_day,
    peak_day,
    run_series,
    until,
)

ROOT = Path(__file__).parents[1]
#: the sources each fact stands on (the numbers are in REFERENCES below)
FACT_SOURCES = {
    1: "VALIDATION.md; healthy serum IL-6: Said, J Med Virol 2021",
    2: "Teachey, Cancer Discov 2016; VALIDATION.md (peak day 7-14)",
    3: "Yescarta prescribing information; Neelapu, NEJM 2017",
    4: "Norelli, Nat Med 2018; Giavridis, Nat Med 2018",
    5: "Norelli, Nat Med 2018; anakinra pilot NCT04432506 (schedule); Strati, Blood Adv 2020",
    6: "Sterner, Blood 2019",
    7: "Gust, Cancer Discov 2017; Santomasso, Cancer Discov 2018",
    8: "Hay, Blood 2017 (dose and marrow burden are independent risk factors); Santomasso 2018 (burden)",
    9: "Giavridis, Nat Med 2018 (CRS at the peak of CAR-T expansion)",
    10: "Teachey, Cancer Discov 2016; Hay, Blood 2017 (grade 4 in 3.8 %, mostly at dose finding; Ang-2 raised before lymphodepletion)",
    11: "Yescarta prescribing information (17 vs 7 days); Santomasso, Cancer Discov 2018 (CSF)",
    12: "Neelapu, NEJM 2017 (CR 54 %, ORR 82 %)",
    13: "issue 19 (numerical: the lattice samples the patient)",
}
REFERENCES = [
    ("1", "healthy adult serum IL-6", "pooled mean 5.2 pg/mL (95 % CI 4.6-5.7), range 0-43.5 (57 studies, 3166 donors)",
     "Said et al., J Med Virol 2021 (meta-analysis)"),
    ("3, 11", "CRS, axi-cel (ZUMA-1, n = 108)", "94 %, grade >= 3 13 % (Lee 2014); onset median day 2 (1-12); duration median 7 days (2-58)",
     "Yescarta prescribing information"),
    ("3, 11", "neurologic toxicity, axi-cel", "87 %, grade >= 3 31 %; onset median day 4 (1-43); duration median 17 days",
     "Yescarta prescribing information"),
    ("3", "CRS and neurotoxicity onset, tisa-cel (JULIET)", "CRS day 3 / 7 days; neurotoxicity day 6 / 14 days", "Schuster, NEJM 2019"),
    ("2", "CAR-T expansion", "100-100,000-fold in vivo; axi-cel median peak 16 CAR-T/uL", "Teachey, Cancer Discov 2016; Blood Adv 2021;5:2523"),
    ("10", "severe-CRS cytokines (51 CTL019 patients)", "peak IFN-g, IL-6, sgp130, sIL-6R among 24 cytokines associated with severe CRS",
     "Teachey, Cancer Discov 2016"),
    ("10", "CRP and ferritin (Teachey 2016)", "associated with CRS but failed to predict severe CRS", "Teachey, Cancer Discov 2016"),
    ("10", "serum IL-6 in severe CRS", "1e3-1e4 pg/mL (range as VALIDATION.md states it; the per-grade medians were not rechecked here)",
     "Teachey 2016; Hay, Blood 2017"),
    ("8, 10", "CRS grades after CD19 CAR-T (133 adults)", "any 70 %: grade 1 26 %, 2 32 %, 3 4.5 %, 4 3.8 %, 5 3.8 %; "
     "higher dose and high marrow burden independent predictors; Ang-2 and vWF raised", "Hay, Blood 2017"),
    ("9", "mouse CRS", "onset day 2-3 at the peak of CAR-T expansion; macrophage IL-6, IL-1 and NO drive it", "Giavridis, Nat Med 2018"),
    ("4, 5", "humanised mice", "monocyte depletion or tocilizumab prevent CRS; anakinra prevents CRS and neurotoxicity", "Norelli, Nat Med 2018"),
    ("5", "anakinra prophylaxis with axi-cel", "100 mg SC daily or twice daily for 7 days from day 0", "pilot study NCT04432506 (Strati, Blood Adv 2023)"),
    ("5", "anakinra prophylaxis with CD19 CAR-T", "100 mg SC every 12 h for at least 10 days (from day 2 or the first fevers)", "MSK study NCT04148430"),
    ("5", "anakinra for axi-cel toxicity (100 SOC patients)", "grade >= 3 ICANS 41, grade >= 3 CRS 9; 8 given anakinra",
     "Strati, Blood Adv 2020;4:3123"),
    ("6", "GM-CSF blockade", "lenzilumab 10 mg/kg daily x 10 d (mice): CRS prevented, less CNS infiltration, tumour control kept",
     "Sterner, Blood 2019"),
    ("7, 11", "CSF in neurotoxicity (53 adults, B-ALL)", "blood-CSF barrier disruption tracks grade; IL-6, IL-8, MCP-1, IP-10 "
     "disproportionately high in CSF (CNS production); severe neurotoxicity with high burden and peak expansion",
     "Santomasso, Cancer Discov 2018"),
    ("12", "ZUMA-1 response (n = 101 treated)", "objective response 82 %, complete response 54 %", "Neelapu, NEJM 2017"),
]  # fmt: skip


def _job(args: tuple[str, str, list[str], int, str]) -> tuple[str, int, dict[str, np.ndarray]]:
    name, config, overrides, seed, backend = args
    return name, seed, run_series(config, overrides, seed, backend)


def summarise(s: dict[str, np.ndarray]) -> dict[str, float]:
    """The headline numbers of one run."""
    cart = cart_cells(s)
    row = {
        "CRS onset (day)": first_day(s, "crs_grade", 1),
        "max CRS": s["crs_grade"].max(),
        "CRS days (grade >= 1)": days_at_or_above(s, "crs_grade"),
        "ICANS onset (day)": first_day(s, "icans_grade", 1),
        "max ICANS": s["icans_grade"].max(),
        "ICANS days (grade >= 1)": days_at_or_above(s, "icans_grade"),
        "peak serum IL-6 (pg/mL)": s["serum/IL6"].max(),
        "serum IL-6 peak day": peak_day(s, "serum/IL6"),
        "peak CNS IL-6 (pg/mL)": s["cns/IL6"].max(),
        "CAR-T peak day": s["time_h"][int(np.argmax(cart))] / 24.0,
        "CAR-T fold expansion": cart.max() / max(cart[0], 1.0),
        "peak CAR-T in blood (/uL)": s["blood_per_ul/cart"].max(),
        "tumour at end (% of start)": 100.0 * s["tumor_burden"][-1] / max(s["tumor_burden"][0], 1.0),
        "min BBB integrity": s["bbb_integrity"].min(),
    }
    for key, label in (("crp_mg_l", "peak CRP (mg/L)"), ("ferritin_ng_ml", "peak ferritin (ng/mL)")):
        if key in s:  # readouts of the myeloid model, where present
            row[label] = s[key].max()
    return row


def plot(results: dict[str, dict[int, dict[str, np.ndarray]]], out: Path) -> list[str]:
    """PNG plots of the scenarios (first seed): serum IL-6, grades, CAR-T, tumour, BBB, CNS IL-6."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [("serum/IL6", "serum IL-6 (pg/mL)", True), ("cns/IL6", "CNS IL-6 (pg/mL)", True),
              ("crs_grade", "CRS grade (model surrogate)", False), ("icans_grade", "ICANS grade (model surrogate)", False),
              ("cells/cart", "CAR-T cells on the lattice's scale (lattice + pool)", True), ("tumor_burden", "B cells (tumour)", False),
              ("bbb_integrity", "BBB integrity (1 = intact)", False), ("vascular_leak", "systemic leak (0..1)", False)]  # fmt: skip
    fig, axes = plt.subplots(4, 2, figsize=(12, 13), sharex=True)
    colours = plt.get_cmap("tab20").colors  # one colour per scenario (the default cycle repeats after ten)
    for ax, (key, label, log) in zip(axes.ravel(), panels):
        for i, (name, by_seed) in enumerate(results.items()):
            s = by_seed[min(by_seed)]
            y = s.get(key, s["counts/cart"]) if key == "cells/cart" else s[key]  # older runs: agents
            # the follow-up repeats the standard run's first 14 days: dashed, so the standard line shows under it
            ax.plot(s["time_h"] / 24.0, np.maximum(y, 1e-3) if log else y, label=name, color=colours[(2 * i) % 20 + (2 * i) // 20],
                    linestyle="--" if name == "followup" else "-")  # fmt: skip
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
    return [path.name, plot_series(results, out, plt)]


def peak_il6(s: dict[str, np.ndarray]) -> float:
    """Peak serum IL-6 over the dose and burden series' window (fact 8) [pg/mL]."""
    return float(until(s, SERIES_H)["serum/IL6"].max())


def plot_series(results: dict[str, dict[int, dict[str, np.ndarray]]], out: Path, plt) -> str:
    """Fact 8's plot: peak serum IL-6 (first 14 days) against CAR-T dose and tumour burden, every seed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, series, label in ((axes[0], DOSE_SERIES, "CAR-T dose (x default)"), (axes[1], BURDEN_SERIES, "tumour burden (cells)")):
        for name, x in series.items():
            for s in results[name].values():
                ax.scatter([x], [peak_il6(s)], color="C0", s=18)
                ax.annotate(f"CRS {s['crs_grade'].max():.0f}", (x, peak_il6(s)), fontsize=7, xytext=(4, -3), textcoords="offset points")
        xs = list(series.values())
        ax.plot(xs, [np.mean([peak_il6(s) for s in results[n].values()]) for n in series], color="C0", alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"peak serum IL-6, first {SERIES_H / 24:g} days (pg/mL)")
    fig.suptitle("fact 8: peak IL-6 against dose and burden (each seed; max CRS grade beside it)")
    fig.tight_layout()
    path = out / "dose_burden.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def noise_lines(results: dict[str, dict[int, dict[str, np.ndarray]]]) -> list[str]:
    """Seed-to-seed spread of peak IL-6 per series scenario, beside fact 8's smallest step that counts."""
    rows = []
    for name in {**DOSE_SERIES, **BURDEN_SERIES}:
        peaks = [peak_il6(s) for s in results[name].values()]
        if len(peaks) > 1:
            rows.append(f"{name} x{max(peaks) / max(min(peaks), 1e-12):.2f}")
    if not rows:
        return []
    return ["", f"Seed-to-seed spread of peak IL-6 (max/min over seeds; fact 8 counts a step only above x{SMOOTH_MIN_FOLD:g}): "
            + ", ".join(rows) + "."]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="validation", help="report folder")
    parser.add_argument("--full", action="store_true", help="configs/default.yaml at full size (GPU advised)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "auto"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every scenario after its own (e.g. a patient trait, or run.duration_h for a smoke run)")  # fmt: skip
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = str(ROOT / "configs" / ("default.yaml" if args.full else "quickstart.yaml"))
    jobs = [(name, config, overrides + args.set, 1 + seed, args.backend) for name, overrides in SCENARIOS.items()
            for seed in range(args.seeds)]  # fmt: skip
    started = time.perf_counter()
    results: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    with ProcessPoolExecutor(max_workers=max(1, args.workers if args.backend == "numpy" else 1)) as pool:
        for name, seed, series in pool.map(_job, jobs):
            results.setdefault(name, {})[seed] = series
            print(f"  {name} seed {seed}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    command = " ".join(["python scripts/validate.py", *sys.argv[1:]])
    lines = ["# carabm validation report", "",
             f"Produced by `{command}` on {datetime.date.today().isoformat()} ({os.cpu_count()}-core machine, backend "
             f"{args.backend}). How each fact is checked: [How the facts are checked](facts.md).", "",
             f"Config: `{Path(config).name}`; seeds per scenario: {args.seeds}; "
             f"backend: {args.backend}; wall time {time.perf_counter() - started:.0f} s.",
             "All grades are model surrogates of the ASTCT grades.", "", "## Facts of VALIDATION.md", "",
             "| fact | result | model's numbers (each seed) | sources |", "|---|---|---|---|"]  # fmt: skip
    all_pass = True
    for fact in FACTS:
        outcomes = [fact.check(*[results[name][seed] for name in fact.scenarios]) for seed in sorted(results[fact.scenarios[-1]])]
        passed = all(ok for ok, _ in outcomes)
        all_pass &= passed
        numbers = "<br>".join(text for _, text in outcomes)
        source = FACT_SOURCES.get(fact.number, "VALIDATION.md")
        lines.append(f"| {fact.number}. {fact.text} | {'PASS' if passed else 'FAIL'} | {numbers} | {source} |")
    lines += noise_lines(results)
    lines += ["", "## Scenario summaries (mean over seeds)", ""]
    keys = list(summarise(results["standard"][1]))
    lines += ["| scenario | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, by_seed in results.items():
        values = [summarise(s) for s in by_seed.values()]
        lines.append(f"| {name} | " + " | ".join(f"{np.mean([v[k] for v in values]):.3g}" for k in keys) + " |")
    lines += ["", "## Clinical and mouse reference numbers", "", "| fact | what | reference | source |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in REFERENCES]
    lines += ["", "## Plots", ""] + [f"![{Path(name).stem}]({name})" for name in plot(results, out)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'}: {'all facts PASS' if all_pass else 'some facts FAIL'}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    raise SystemExit(main())
