"""Cohort plots of ``carabm collect``: grade distributions, onset-day distributions, peak IL-6 by grade.

Each function takes collect's member rows (complete members) and, when the sweep carries
one, the trial's table (:class:`carabm.hpc.trial.Trial`) drawn as reference marks; each
writes one PNG (matplotlib, Agg, no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carabm.hpc.trial import STATISTICS, Trial, wilson_interval

GRADES = range(5)


def _figure(n_panels: int) -> tuple[Any, list[Any]]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(4.6 * n_panels, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, n_panels, squeeze=False).ravel())


def _values(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None and r.get(key) != ""]


def grade_distribution(rows: Sequence[dict[str, Any]], path: Path, trial: Trial | None = None) -> Path:
    """Share of members by worst CRS and ICANS grade (0-4) with Wilson 95 % bars; the trial's any / >= 3 as marks."""
    fig, axes = _figure(2)
    for ax, syndrome in zip(axes, ("crs", "icans")):
        grades = [int(g) for g in _values(rows, f"max_{syndrome}_grade")]
        n = len(grades)
        shares, lows, highs = [], [], []
        for g in GRADES:
            k = sum(x == g for x in grades)
            lo, hi = wilson_interval(k, n)
            p = k / n if n else 0.0
            shares.append(p)
            lows.append(p - lo if n else 0.0)
            highs.append(hi - p if n else 0.0)
        ax.bar(list(GRADES), shares, yerr=[lows, highs], color="tab:blue", alpha=0.75, capsize=3,
               label=f"cohort, worst grade = g (n = {n})")  # fmt: skip
        at_least = [sum(x >= g for x in grades) / n if n else 0.0 for g in GRADES]
        ax.plot(list(GRADES)[1:], at_least[1:], "k_", markersize=22, markeredgewidth=2, label="cohort, grade >= g")
        ax.set_xticks(list(GRADES))
        ax.set_xlabel(f"worst {syndrome.upper()} grade g (model surrogate)")
        ax.set_ylabel("share of members")
        ax.set_ylim(0, 1.45)  # room above 100 % for the legend
        ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        if trial is not None:
            marks = [(g, trial.outcomes[stat]) for g, stat in ((1, f"{syndrome}_any"), (3, f"{syndrome}_grade3")) if stat in trial.outcomes]
            if marks:
                ax.plot([g for g, _ in marks], [v for _, v in marks], "D", color="tab:red", label=f"{trial.name}, grade >= g")
        ax.set_title(f"{syndrome.upper()}: any grade {100 * at_least[1]:.0f} % of the cohort")
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def onset_distribution(rows: Sequence[dict[str, Any]], path: Path, trial: Trial | None = None) -> Path:
    """Histograms of onset days (grade >= 1) of CRS and ICANS among members with the event; trial medians as lines."""
    import numpy as np  # noqa: PLC0415

    from carabm.hpc.trial import median  # noqa: PLC0415

    fig, axes = _figure(2)
    for ax, syndrome in zip(axes, ("crs", "icans")):
        days = _values(rows, f"{syndrome}_onset_day_grade_ge1")
        top = max([*days, 1.0])
        bins = np.arange(0.0, np.ceil(top) + 1.0, 1.0 if top > 3 else 0.25)
        ax.hist(days, bins=bins, color="tab:blue", alpha=0.75, label=f"cohort ({len(days)} with {syndrome.upper()})")
        if days:
            ax.axvline(median(days), color="tab:blue", linestyle="-", label=f"cohort median {median(days):.2f} d")
        stat = f"{syndrome}_onset_median_day"
        if trial is not None and stat in trial.outcomes:
            ax.axvline(trial.outcomes[stat], color="tab:red", linestyle="--", label=f"{trial.name} median {trial.outcomes[stat]:g} d")
        ax.set_xlabel(f"{syndrome.upper()} onset, grade >= 1 [day after infusion]")
        ax.set_ylabel("members")
        ax.set_title(STATISTICS[stat].label.replace(", median [day]", " day"))
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def il6_by_grade(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Peak serum IL-6 of each member against its worst CRS grade (log scale, one point per member, median bar)."""
    import numpy as np  # noqa: PLC0415

    from carabm.hpc.trial import median  # noqa: PLC0415

    fig, axes = _figure(1)
    ax = axes[0]
    rng = np.random.default_rng(0)  # horizontal jitter only, so that equal values stay visible
    for g in GRADES:
        peaks = [float(r["peak_serum_IL6_pg_ml"]) for r in rows
                 if r.get("max_crs_grade") not in (None, "") and int(r["max_crs_grade"]) == g and r.get("peak_serum_IL6_pg_ml")]  # fmt: skip
        if not peaks:
            continue
        ax.scatter(g + rng.uniform(-0.15, 0.15, len(peaks)), peaks, s=14, color="tab:blue", alpha=0.7)
        ax.hlines(median(peaks), g - 0.3, g + 0.3, color="black")
    ax.set_yscale("log")
    ax.set_xticks(list(GRADES))
    ax.set_xlim(-0.5, 4.5)
    ax.set_xlabel("worst CRS grade (model surrogate)")
    ax.set_ylabel("peak serum IL-6 [pg/mL]")
    ax.set_title("Peak serum IL-6 by CRS grade (bar: median)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def cohort_plots(rows: Sequence[dict[str, Any]], folder: Path, trial: Trial | None = None) -> list[Path]:
    """All three plots into ``folder`` (``grades.png``, ``onset_days.png``, ``peak_il6_by_grade.png``)."""
    return [grade_distribution(rows, folder / "grades.png", trial), onset_distribution(rows, folder / "onset_days.png", trial),
            il6_by_grade(rows, folder / "peak_il6_by_grade.png")]  # fmt: skip


__all__ = ["cohort_plots", "grade_distribution", "onset_distribution", "il6_by_grade"]
