"""A trial's published table, the cohort statistics that match it, and their 95 % intervals.

One statistic per row of a trial's table (:data:`STATISTICS`): an incidence (CRS / ICANS any
grade and grade >= 3, complete response) or a median onset day. :func:`cohort_statistics`
computes them over a cohort's member rows (``carabm collect``), :func:`comparison` puts the
cohort next to the trial with Wilson intervals for incidences and distribution-free
order-statistic intervals for medians. Used by ``carabm collect`` and ``carabm calibrate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from carabm.errors import ConfigError

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95 % by default); (nan, nan) when n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def median(values: Sequence[float]) -> float:
    """The sample median (mean of the two middle values for an even count); nan when empty."""
    x = sorted(values)
    n = len(x)
    if n == 0:
        return math.nan
    return x[n // 2] if n % 2 else 0.5 * (x[n // 2 - 1] + x[n // 2])


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of a median from order statistics.

    The interval is ``[x_(j), x_(n+1-j)]`` with the largest rank j for which
    ``P(Binomial(n, 1/2) <= j - 1) <= (1 - confidence) / 2``; its coverage is at least
    ``confidence`` for any continuous distribution (e.g. Conover, *Practical Nonparametric
    Statistics*, 3rd ed., §3.2). (nan, nan) when n is too small for that coverage (n < 6 at 95 %).
    """
    from scipy.stats import binom  # noqa: PLC0415

    x = sorted(float(v) for v in values)
    n = len(x)
    alpha = (1.0 - confidence) / 2
    j = 0
    while j + 1 <= n // 2 and binom.cdf(j, n, 0.5) <= alpha:  # rank j + 1 still keeps the tail below alpha
        j += 1
    if j == 0:
        return math.nan, math.nan
    return x[j - 1], x[n - j]


@dataclass(frozen=True)
class Statistic:
    """One row of a trial's table and how a cohort's member rows give it.

    ``kind`` is ``incidence`` (share of members whose summary ``key`` is >= ``threshold``) or
    ``median`` (median of ``key`` over the members that have it: an onset day among the
    members with the event, as trials report it).
    """

    name: str
    label: str
    kind: str
    key: str
    threshold: float = 1.0


#: the statistics a trial table and a calibration can name (keys of collect's member rows)
STATISTICS: dict[str, Statistic] = {s.name: s for s in (
    Statistic("crs_any", "CRS, any grade", "incidence", "max_crs_grade", 1),
    Statistic("crs_grade3", "CRS, grade >= 3", "incidence", "max_crs_grade", 3),
    Statistic("icans_any", "ICANS, any grade", "incidence", "max_icans_grade", 1),
    Statistic("icans_grade3", "ICANS, grade >= 3", "incidence", "max_icans_grade", 3),
    Statistic("crs_onset_median_day", "CRS onset, median [day]", "median", "crs_onset_day_grade_ge1"),
    Statistic("icans_onset_median_day", "ICANS onset, median [day]", "median", "icans_onset_day_grade_ge1"),
    # a member row's ``complete_response`` (1 = complete response at the run's end, 0 = not; carabm.io.summary.tumour_response)
    Statistic("complete_response", "complete response", "incidence", "complete_response", 1),
)}  # fmt: skip


@dataclass
class Trial:
    """A trial's published table: its size, grading scale, source and outcome values."""

    name: str
    n: int
    source: str
    grading: str
    outcomes: dict[str, float]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: str = ""


TRIAL_KEYS = ("name", "n", "source", "grading", "outcomes", "notes")


def check_mapping(value: Any, where: str, allowed: tuple[str, ...] | None = None, empty_ok: bool = True) -> dict[str, Any]:
    """``value`` as a mapping with only ``allowed`` keys (None: ``{}`` when ``empty_ok``); else one line naming ``where``."""
    if value is None and empty_ok:
        return {}
    if not isinstance(value, dict) or (not value and not empty_ok):
        raise ConfigError(f"{where}: expected a mapping" + (f" with {', '.join(allowed)}" if allowed else ""))
    if allowed is not None:
        unknown = set(value) - set(allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected {', '.join(allowed)}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def parse_trial(data: Any, where: str = "trial") -> Trial:
    """Validate a ``trial:`` mapping (one line per problem) into a :class:`Trial`.

    ``outcomes`` maps names of :data:`STATISTICS` to a number (incidences as fractions in
    [0, 1], medians in days) or ``{value: V, range: [LOW, HIGH]}`` (a published range).
    """
    check_mapping(data, where, TRIAL_KEYS, empty_ok=False)
    for key in ("name", "source", "grading"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ConfigError(f"{where}.{key}: required text (the trial's name, its publication, the grading scale it used)")
    n = data.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{where}.n: expected the number of patients (a whole number >= 1), got {n!r}")
    outcomes_in = data.get("outcomes")
    if not isinstance(outcomes_in, dict) or not outcomes_in:
        raise ConfigError(f"{where}.outcomes: expected a mapping of {', '.join(STATISTICS)} to values")
    outcomes: dict[str, float] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for name, value in outcomes_in.items():
        at = f"{where}.outcomes.{name}"
        if name not in STATISTICS:
            raise ConfigError(f"{at}: unknown outcome; expected one of {', '.join(STATISTICS)}")
        if isinstance(value, dict):
            extra = set(value) - {"value", "range"}
            if extra or "value" not in value:
                raise ConfigError(f"{at}: expected a number or {{value: V, range: [LOW, HIGH]}}, got {value!r}")
            if "range" in value:
                rng = value["range"]
                if not isinstance(rng, list) or len(rng) != 2:
                    raise ConfigError(f"{at}.range: expected [LOW, HIGH], got {rng!r}")
                ranges[name] = (_number(rng[0], f"{at}.range"), _number(rng[1], f"{at}.range"))
            value = value["value"]
        x = _number(value, at)
        if STATISTICS[name].kind == "incidence" and not 0 <= x <= 1:
            raise ConfigError(f"{at}: an incidence is a fraction in [0, 1] (0.93 for 93 %), got {x:g}")
        if STATISTICS[name].kind == "median" and x < 0:
            raise ConfigError(f"{at}: a median day must be >= 0, got {x:g}")
        outcomes[name] = x
    notes = data.get("notes", "")
    return Trial(str(data["name"]), n, str(data["source"]), str(data["grading"]), outcomes, ranges, str(notes or ""))


@dataclass
class Estimate:
    """A statistic of a cohort: its value, 95 % interval and what it was computed from."""

    value: float
    low: float
    high: float
    k: int  # incidences: members with the event; medians: members with a value
    n: int  # members the statistic was computed over


def has_readout(stat: Statistic, rows: Sequence[dict[str, Any]]) -> bool:
    """Whether any member row carries the summary key of ``stat`` (e.g. a response readout)."""
    return any(stat.key in r for r in rows)


def estimate(stat: Statistic, rows: Sequence[dict[str, Any]]) -> Estimate:
    """``stat`` over the member rows (collect's rows of complete members), with its 95 % interval."""
    if stat.kind == "incidence":
        graded = [r for r in rows if r.get(stat.key) is not None and r.get(stat.key) != ""]
        k = sum(float(r[stat.key]) >= stat.threshold for r in graded)
        n = len(graded)
        lo, hi = wilson_interval(k, n)
        return Estimate(k / n if n else math.nan, lo, hi, k, n)
    values = [float(r[stat.key]) for r in rows if r.get(stat.key) is not None and r.get(stat.key) != ""]
    lo, hi = median_interval(values)
    return Estimate(median(values), lo, hi, len(values), len(rows))


def cohort_statistics(names: Sequence[str], rows: Sequence[dict[str, Any]], censor_day: float) -> dict[str, float]:
    """The named statistics of a cohort as plain numbers (a calibration's summary statistics).

    A median onset with no member having the event is censored at ``censor_day`` (the run's
    length: the event did not happen within it); an incidence over no member is nan.
    """
    out: dict[str, float] = {}
    for name in names:
        est = estimate(STATISTICS[name], rows)
        value = est.value
        if STATISTICS[name].kind == "median" and est.k == 0:
            value = censor_day
        out[name] = float(value)
    return out


@dataclass
class ComparisonRow:
    """One row of the cohort-versus-trial table."""

    name: str
    label: str
    cohort: Estimate | None
    trial_value: float | None
    trial_low: float = math.nan
    trial_high: float = math.nan
    trial_range: tuple[float, float] | None = None


def comparison(trial: Trial, rows: Sequence[dict[str, Any]]) -> list[ComparisonRow]:
    """The cohort next to the trial, one row per trial outcome; the cohort cell is None without a model readout.

    Trial incidences get the Wilson interval of ``round(p n) / n``; trial medians have no
    interval (the individual onset days are not published), only a published range if given.
    """
    out = []
    for name, value in trial.outcomes.items():
        stat = STATISTICS[name]
        cohort = estimate(stat, rows) if has_readout(stat, rows) else None
        row = ComparisonRow(name, stat.label, cohort, value, trial_range=trial.ranges.get(name))
        if stat.kind == "incidence":
            row.trial_low, row.trial_high = wilson_interval(round(value * trial.n), trial.n)
        out.append(row)
    return out


def _cell(kind: str, x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{100 * x:.1f} %" if kind == "incidence" else f"{x:.2f}"


def comparison_markdown(trial: Trial, table: list[ComparisonRow]) -> list[str]:
    """The comparison as Markdown lines (a heading, the grading note, the table)."""
    lines = ["", f"## Cohort versus {trial.name}", "",
             f"Trial: {trial.name}, n = {trial.n} ({trial.source}). Grading in the trial: {trial.grading}",
             "The cohort's grades are model surrogates of ASTCT grades (docs/model.md).", "",
             "| outcome | cohort | 95 % CI | members | trial | 95 % CI |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in table:
        kind = STATISTICS[row.name].kind
        trial_ci = f"{_cell(kind, row.trial_low)} – {_cell(kind, row.trial_high)}" if kind == "incidence" else (
            f"range {row.trial_range[0]:g} – {row.trial_range[1]:g}" if row.trial_range else "not published")
        trial_cell = _cell(kind, row.trial_value) if row.trial_value is not None else "n/a"
        if row.cohort is None:
            lines.append(f"| {row.label} | n/a (no model readout) | | | {trial_cell} | {trial_ci} |")
            continue
        c = row.cohort
        members = f"{c.k}/{c.n}" if kind == "incidence" else f"{c.k} with the event"
        ci = "n/a (< 6 values)" if math.isnan(c.low) and kind == "median" else f"{_cell(kind, c.low)} – {_cell(kind, c.high)}"
        lines.append(f"| {row.label} | {_cell(kind, c.value)} | {ci} | {members} | {trial_cell} | {trial_ci} |")
    lines += ["", "Incidence intervals: Wilson score; median intervals: order statistics (distribution-free, "
              "n/a below 6 values)."]  # fmt: skip
    if trial.notes:
        lines += ["", trial.notes.strip()]
    return lines


__all__ = ["Trial", "Statistic", "Estimate", "ComparisonRow", "STATISTICS", "TRIAL_KEYS", "parse_trial", "estimate",
           "cohort_statistics", "comparison", "comparison_markdown", "wilson_interval", "median_interval", "median",
           "has_readout", "check_mapping"]  # fmt: skip
