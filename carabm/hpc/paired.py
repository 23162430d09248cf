"""Paired arms of a sweep: the same virtual patients under two or more treatments.

A ``cohort`` axis with ``paired: true`` gives patient i one ``run.seed`` in every arm of a
later axis (docs/hpc.md), so the members that share a seed are one patient. ``carabm
collect`` then compares the arms patient by patient: per arm the incidence of each outcome
(Wilson 95 % interval), and against the first arm the discordant pairs (event only without,
only with the arm's change) with the exact McNemar test (a two-sided binomial test of the
discordant pairs, :func:`scipy.stats.binomtest`), plus the median within-patient ratio of
peak serum IL-6. Only patients with every arm complete are compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from carabm.hpc.trial import median, wilson_interval

#: label, results column, event test
OUTCOMES: tuple[tuple[str, str, Any], ...] = (
    ("CRS any grade", "max_crs_grade", lambda v: int(v) >= 1),
    ("CRS grade >= 3", "max_crs_grade", lambda v: int(v) >= 3),
    ("ICANS any grade", "max_icans_grade", lambda v: int(v) >= 1),
    ("ICANS grade >= 3", "max_icans_grade", lambda v: int(v) >= 3),
    ("Complete response at the end", "response_end", lambda v: v == "CR"),
)
IL6 = "peak_serum_IL6_pg_ml"


@dataclass
class Paired:
    """Arms (labels in member order), the patients compared and the per-outcome records."""

    arm_keys: list[str]
    arms: list[str]
    patients: int
    excluded: int
    records: list[dict[str, Any]] = field(default_factory=list)  # one per (outcome, arm): the arms.csv rows


def _label(row: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={row.get(k)}" for k in keys)


def paired_arms(header: list[str], rows: list[dict[str, Any]]) -> Paired | None:
    """The paired comparison of a sweep's members, or None when no two members share a seed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["seed"]), []).append(row)
    shared = [g for g in groups.values() if len(g) > 1]
    if not shared:
        return None
    varied = [h for h in header if h not in ("index", "seed")]
    arm_keys = [k for k in varied if any(len({str(r.get(k)) for r in g}) > 1 for g in shared)]
    arms: list[str] = []
    for row in rows:
        label = _label(row, arm_keys)
        if label not in arms:
            arms.append(label)
    patients = []
    for g in groups.values():
        by_arm = {_label(r, arm_keys): r for r in g}
        if len(g) == len(arms) and set(by_arm) == set(arms) and all(r["status"] == "complete" for r in g):
            patients.append(by_arm)
    result = Paired(arm_keys, arms, len(patients), len(groups) - len(patients))
    from scipy.stats import binomtest  # noqa: PLC0415

    reference = arms[0]
    for label, column, event in OUTCOMES:
        known = [p for p in patients if all(p[a].get(column) not in (None, "") for a in arms)]
        for arm in arms:
            k = sum(bool(event(p[arm][column])) for p in known)
            n = len(known)
            lo, hi = wilson_interval(k, n)
            record = {"outcome": label, "arm": arm, "patients": n, "events": k,
                      "incidence": k / n if n else math.nan, "ci_low": lo, "ci_high": hi,
                      "only_reference": "", "only_arm": "", "mcnemar_p": ""}  # fmt: skip
            if arm != reference:
                b = sum(bool(event(p[reference][column])) and not event(p[arm][column]) for p in known)
                c = sum(not event(p[reference][column]) and bool(event(p[arm][column])) for p in known)
                record.update(only_reference=b, only_arm=c,
                              mcnemar_p=binomtest(b, b + c, 0.5).pvalue if b + c else 1.0)  # fmt: skip
            result.records.append(record)
    for arm in arms[1:]:
        ratios = [float(p[arm][IL6]) / float(p[reference][IL6]) for p in patients
                  if p[arm].get(IL6) not in (None, "") and p[reference].get(IL6) not in (None, "") and float(p[reference][IL6]) > 0]  # fmt: skip
        result.records.append({"outcome": "peak serum IL-6, within-patient ratio to the first arm (median)", "arm": arm,
                               "patients": len(ratios), "events": "", "incidence": median(ratios) if ratios else math.nan,
                               "ci_low": min(ratios) if ratios else math.nan, "ci_high": max(ratios) if ratios else math.nan,
                               "only_reference": "", "only_arm": "", "mcnemar_p": ""})  # fmt: skip
    return result


def _pct(x: float) -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{100 * x:.0f} %"


def paired_markdown(result: Paired) -> list[str]:
    """The ``Paired arms`` section of ``summary.md``."""
    ref = result.arms[0]
    lines = ["", "## Paired arms (the same patients in every arm)", "",
             f"Arms differ by {', '.join(result.arm_keys) or '(nothing)'}; {result.patients} patients have every arm complete"
             + (f"; {result.excluded} more lack an arm (not run or failed) and are left out" if result.excluded else "") + f". Reference arm: `{ref}`.", "",
             "| outcome | arm | incidence | 95 % CI | only in reference | only in arm | McNemar p |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result.records:
        if r["events"] == "":  # the IL-6 ratio rows
            continue
        p = r["mcnemar_p"]
        lines.append(f"| {r['outcome']} | `{r['arm']}` | {r['events']}/{r['patients']} ({_pct(r['incidence'])}) | "
                     f"{_pct(r['ci_low'])} – {_pct(r['ci_high'])} | {r['only_reference']} | {r['only_arm']} | "
                     f"{'' if p == '' else f'{p:.3g}'} |")  # fmt: skip
    ratios = [r for r in result.records if r["events"] == ""]
    if ratios:
        lines += ["", "| arm | peak serum IL-6 / reference arm's, same patient: median | range | patients |", "|---|---|---|---|"]
        lines += [f"| `{r['arm']}` | {r['incidence']:.3g} | {r['ci_low']:.3g} – {r['ci_high']:.3g} | {r['patients']} |" for r in ratios]
    return lines


__all__ = ["Paired", "paired_arms", "paired_markdown", "OUTCOMES"]
