"""VALIDATION.md's scenarios and facts as code, shared by ``scripts/validate.py`` and the tests.

A scenario is a list of ``--set`` overrides on a base config; a fact is a check on the time
series of one or more scenarios that returns (passed, the model's numbers as text).
Baselines are the model's own resting state (the no-CAR-T run), which must itself be
physiological; ranges are the ones VALIDATION.md writes, not widened to fit the model.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import carabm.biology  # noqa: F401  (registers the built-in model in the catalog)
from carabm.io.config import load_config
from carabm.simulation import Simulation

Series = dict[str, np.ndarray]

#: the default CAR-T dose of configs/quickstart.yaml and default.yaml [cells] (axi-cel 2e6/kg x 70 kg)
STANDARD_DOSE = 1.4e8
#: the dose and burden series run 14 days, as the standard run: CRS starts by day 12 (onset median
#: day 2, range 1-12: Yescarta prescribing information), and a quarter dose or ten times the tumour
#: expands later than the standard patient (its IL-6 still rises on day 8); fact 8 fails if a run's
#: IL-6 is still near its maximum at the end, so a late peak cannot be cut off unnoticed
SERIES_H = 336.0
#: healthy adult serum IL-6: pooled mean 5.2 pg/mL (95 % CI 4.6-5.7), "a few pg/mL"
#: (Said et al., J Med Virol 2021, meta-analysis of 57 studies); the resting model must lie in
RESTING_IL6_PG_ML = (1.0, 10.0)
#: fact 8: a step of the series (4x dose or 10x burden) must change peak IL-6 by more than this
#: factor (seed-to-seed noise of peak IL-6 is a few per cent: scripts/validate.py reports it) ...
SMOOTH_MIN_FOLD = 1.2
#: ... and by no more than the step's own factor (log-log slope <= 1: graded, not a cliff)
SMOOTH_MAX_SLOPE = 1.0
#: fact 11 follows the standard patient for 21 days: ICANS that starts near day 6 is often still
#: going on day 14, and a duration cut off by the end of the run cannot be compared with CRS's
FOLLOWUP_H = 504.0
#: fact 10: serum IL-6 in severe CRS [pg/mL] (VALIDATION.md, from Teachey 2016 and Hay 2017)
SEVERE_IL6_PG_ML = (1e3, 1e4)
#: fact 10's high-risk patient: pre-infusion Ang-2/Ang-1 twice the default patient's 0.25 (assumed; the
#: cohort's prior for the trait spans 0.08-0.8, docs/calibration.md)
HIGH_RISK_ANG2_ANG1 = 0.5
#: clinical days: infusion at day 0, day d covers [d - 0.5, d + 0.5) days after infusion
HALF_DAY = 0.5

#: anakinra 100 mg SC every 12 h for 10 days from day 0: the dose of the prophylactic pilot with
#: axi-cel (NCT04432506, Strati et al., Blood Adv 2023: 100 mg daily or twice daily from day 0) over
#: the 10 days of the MSK prophylaxis study (NCT04148430: 100 mg every 12 h for at least 10 days)
#: that cover the CAR-T peak; the pilot's 7-day course ends on the model's IL-6 peak (day 7) and
#: leaves a rebound to CRS 3 on day 8 (docs/model.md)
ANAKINRA = "{drug: anakinra, start_h: 0, every_h: 12, max_doses: 20}"
#: lenzilumab 10 mg/kg (drugs.py default) daily x 10 days from day 0, as in Sterner, Blood 2019
LENZILUMAB = "{drug: lenzilumab, start_h: 0, every_h: 24, max_doses: 10}"
#: monocyte and macrophage depletion by drug from day 0 (drugs.py: 90 % removed within a day)
DEPLETION = ("{drug: monocyte_depletion, start_h: 0, every_h: 72, max_doses: 5}, "
             "{drug: macrophage_depletion, start_h: 0, every_h: 72, max_doses: 5}")  # fmt: skip


def _dose(factor: float) -> str:
    return f"cells.cart.dose={STANDARD_DOSE * factor:g}"


SHORT = f"run.duration_h={SERIES_H:g}"
SCENARIOS: dict[str, list[str]] = {
    "no_cart": ["cells.cart.dose=0"],
    "standard": [],
    "depletion": [f"therapies=[{DEPLETION}]"],
    "anakinra": [f"therapies=[{ANAKINRA}]"],
    "lenzilumab": [f"therapies=[{LENZILUMAB}]"],
    "tocilizumab_grade2": ["therapies=[{drug: tocilizumab, when: 'crs_grade >= 2', max_doses: 4, min_interval_h: 8}]"],
    # fact 8 series (the standard run is 1x dose and 1e10 cells), 14 days each
    "dose_0.25x": [_dose(0.25), SHORT],
    "dose_4x": [_dose(4.0), SHORT],
    "burden_1e9": ["patient.tumor_burden_cells=1e9", SHORT],
    "burden_1e11": ["patient.tumor_burden_cells=1e11", SHORT],
    # fact 10: a high-risk patient, 14 days: four times the dose (grade >= 4 CRS came mostly at the
    # higher doses of dose finding, Hay, Blood 2017) and twice the default's pre-infusion Ang-2/Ang-1
    # (raised before lymphodepletion in patients who went on to severe CRS and neurotoxicity: Hay 2017;
    # Gust, Cancer Discov 2017), within the virtual cohort's range of that trait
    "high_risk": [_dose(4.0), f"patient.ang2_ang1_baseline={HIGH_RISK_ANG2_ANG1:g}", SHORT],
    # fact 12: a quarter dose against ten times the tumour, 10 days
    "low_dose_high_burden": [_dose(0.25), "patient.tumor_burden_cells=1e11", "run.duration_h=240"],
    # the standard patient sampled by half the tumour agents (the quickstart's 1500 -> 750): fact 13
    "sampling_half": ["cells.bcell.initial_count=750"],
    # fact 11: the standard patient followed to day 21, so that an ICANS episode still going on
    # day 14 is not cut off (the label's durations are to resolution)
    "followup": [f"run.duration_h={FOLLOWUP_H:g}"],
}  # fmt: skip
DOSE_SERIES = {"dose_0.25x": 0.25, "standard": 1.0, "dose_4x": 4.0}
BURDEN_SERIES = {"burden_1e9": 1e9, "standard": 1e10, "burden_1e11": 1e11}


def run_series(config_path: str | Path, overrides: list[str], seed: int | None = None, backend: str = "numpy") -> Series:
    """Run the model to the end and return its time series as arrays (HDF5 names as keys)."""
    extra = [f"run.seed={seed}"] if seed is not None else []
    config = load_config(config_path, list(overrides) + extra)
    sim = Simulation(config, backend)
    rows = [sim.readouts()]
    for _ in range(config.run.n_steps):
        sim.step()
        rows.append(sim.readouts())
    keys = rows[-1].keys()
    return {key: np.array([row.get(key, 0.0) for row in rows], dtype=float) for key in keys}


def _run_scenario(args: tuple[str, str, int | None]) -> tuple[str, Series]:
    config_path, name, seed = args
    return name, run_series(config_path, SCENARIOS[name], seed)


def run_scenarios(config_path: str | Path, names: list[str], seed: int | None = None, workers: int = 1) -> dict[str, Series]:
    """:func:`run_series` of each named scenario, on ``workers`` fresh (spawned) processes when more than one.

    Each run is the same deterministic model whichever process runs it, so the results do not
    depend on ``workers``. Spawned, not forked: a fork of a process whose compiled code has
    started threads can hang or die.
    """
    jobs = [(str(config_path), name, seed) for name in names]
    if workers <= 1 or len(jobs) <= 1:
        return dict(map(_run_scenario, jobs))
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(pool.map(_run_scenario, jobs))


def first_day(s: Series, key: str, threshold: float) -> float:
    """Day on which ``key`` first reaches ``threshold`` (inf if never)."""
    hit = np.nonzero(s[key] >= threshold)[0]
    return float(s["time_h"][hit[0]] / 24.0) if hit.size else float("inf")


def grade_burden(s: Series, key: str) -> float:
    """Grade-days: the time integral of a grade series (a severity-and-duration measure)."""
    return float(np.trapezoid(s[key], s["time_h"]) / 24.0)


def days_at_or_above(s: Series, key: str, grade: float = 1.0) -> float:
    """Days spent at ``grade`` or worse (a run still at that grade at its end is counted to the end)."""
    dt_h = np.diff(s["time_h"], append=s["time_h"][-1])
    return float(dt_h[s[key] >= grade].sum() / 24.0)


def peak_day(s: Series, key: str) -> float:
    """Day of the maximum of ``key`` (first one if tied)."""
    return float(s["time_h"][int(np.argmax(s[key]))] / 24.0)


def until(s: Series, end_h: float) -> Series:
    """The series up to ``end_h`` (so runs of different lengths compare over the same window)."""
    keep = s["time_h"] <= end_h + 1e-9
    return {key: value[keep] for key, value in s.items()}


def resting_il6(base: Series) -> float:
    """Resting serum IL-6 [pg/mL]: the median over the second half of the no-CAR-T run (settled state)."""
    il6 = base["serum/IL6"]
    return float(np.median(il6[il6.size // 2 :]))


def cytokines(s: Series) -> list[str]:
    """Names of the cytokines with both serum and CNS series (the DAMP surrogate is not a cytokine)."""
    return [key.split("/", 1)[1] for key in s if key.startswith("serum/") and f"cns/{key.split('/', 1)[1]}" in s and key != "serum/DAMP"]


@dataclass(frozen=True)
class Fact:
    """One fact of VALIDATION.md and its check."""

    number: int
    text: str
    scenarios: tuple[str, ...]
    check: Callable[..., tuple[bool, str]]


def fact1(base: Series) -> tuple[bool, str]:
    """Fact 1 on the no-CAR-T run: physiological resting IL-6, no rise above it, grades 0, tumour growing."""
    rest = resting_il6(base)
    physiological = RESTING_IL6_PG_ML[0] <= rest <= RESTING_IL6_PG_ML[1]
    near = base["serum/IL6"].max() <= 2.0 * rest
    growing = base["tumor_burden"][-1] > 1.2 * base["tumor_burden"][0]
    ok = physiological and near and base["crs_grade"].max() == 0 and base["icans_grade"].max() == 0 and growing
    return ok, (f"resting serum IL-6 {rest:.3g} pg/mL (physiological: {RESTING_IL6_PG_ML[0]:g}-{RESTING_IL6_PG_ML[1]:g}), "
                f"peak {base['serum/IL6'].max():.3g} pg/mL (x{base['serum/IL6'].max() / max(rest, 1e-12):.2f} of rest, allowed x2); "
                f"max CRS {base['crs_grade'].max():.0f}, max ICANS {base['icans_grade'].max():.0f}; "
                f"tumour x{base['tumor_burden'][-1] / base['tumor_burden'][0]:.2f}")  # fmt: skip


def cart_cells(s: Series) -> np.ndarray:
    """CAR-T cells over time: the cells the agents stand for where the model writes them, else the agent count."""
    return s.get("cells/cart", s["counts/cart"])


def fact2(s: Series) -> tuple[bool, str]:
    """Fact 2 on the standard-dose run: CAR-T peak within day 7-14, contraction, B cells cleared."""
    cart = cart_cells(s)
    peak = int(np.argmax(cart))
    day = s["time_h"][peak] / 24.0
    cleared = first_day({"time_h": s["time_h"], "b": -s["tumor_burden"]}, "b", -0.02 * s["tumor_burden"][0])
    ok = cart[peak] >= 20 * max(cart[0], 1) and 7.0 <= day <= 14.0 and cart[-1] < 0.5 * cart[peak] and cleared < float("inf")
    return ok, f"CAR-T x{cart[peak] / max(cart[0], 1):.0f} peak on day {day:.1f} (allowed 7-14), final/peak {cart[-1] / cart[peak]:.2f}, B cells <2% on day {cleared:.1f}"


def fact3(base: Series, s: Series) -> tuple[bool, str]:
    """Fact 3: IL-6 above 10x the resting level within 3 days, CRS onset day 1-3, ICANS after CRS."""
    rest = resting_il6(base)
    rise = first_day(s, "serum/IL6", 10 * rest)
    crs, icans = first_day(s, "crs_grade", 1), first_day(s, "icans_grade", 1)
    on_time = 1 - HALF_DAY <= crs < 3 + HALF_DAY
    ok = rise < 3 + HALF_DAY and on_time and s["crs_grade"].max() >= 2 and s["icans_grade"].max() >= 1 and icans > crs
    return ok, (f"IL-6 >10x resting ({10 * rest:.3g} pg/mL) on day {rise:.1f} (peak {s['serum/IL6'].max():.0f} pg/mL); CRS onset "
                f"day {crs:.1f} (allowed clinical day 1-3: {1 - HALF_DAY:g}-{3 + HALF_DAY:g}), max {s['crs_grade'].max():.0f}; "
                f"ICANS onset day {icans:.1f}, max {s['icans_grade'].max():.0f}")  # fmt: skip


def _grades(s: Series) -> str:
    return (f"max CRS {s['crs_grade'].max():.0f} / {grade_burden(s, 'crs_grade'):.1f} grade-days, "
            f"max ICANS {s['icans_grade'].max():.0f} / {grade_burden(s, 'icans_grade'):.1f} grade-days")  # fmt: skip


def fact4(s: Series, d: Series) -> tuple[bool, str]:
    """Fact 4: depletion by drug leaves CRS at grade <= 1 with under a quarter of the grade-days; killing goes on."""
    largely = d["crs_grade"].max() <= 1 and grade_burden(d, "crs_grade") <= 0.25 * grade_burden(s, "crs_grade")
    killing = d["tumor_burden"].min() <= 0.1 * d["tumor_burden"][0]
    ok = largely and s["crs_grade"].max() >= 2 and killing
    return ok, (f"depleted: {_grades(d)}; untreated: {_grades(s)}; peak IL-6 {d['serum/IL6'].max():.0f} vs "
                f"{s['serum/IL6'].max():.0f} pg/mL; tumour min {d['tumor_burden'].min() / d['tumor_burden'][0]:.0%} of start")  # fmt: skip


def _reduced(s: Series, t: Series, key: str) -> bool:
    """A lower worst grade and fewer grade-days (both, as VALIDATION.md asks for therapy facts)."""
    return bool(t[key].max() < s[key].max() and grade_burden(t, key) < grade_burden(s, key))


def fact5(s: Series, a: Series) -> tuple[bool, str]:
    """Fact 5: anakinra at a clinical schedule lowers the worst grade and grade-days of both CRS and ICANS."""
    ok = _reduced(s, a, "crs_grade") and _reduced(s, a, "icans_grade")
    return ok, f"anakinra: {_grades(a)}; untreated: {_grades(s)}"


def fact6(s: Series, g: Series) -> tuple[bool, str]:
    """Fact 6: lenzilumab lowers the worst CRS grade and grade-days and the CNS IL-6 peak; killing preserved."""
    cns_s, cns_g = s["cns/IL6"].max(), g["cns/IL6"].max()
    killed = g["tumor_burden"].min() <= 0.1 * g["tumor_burden"][0]
    ok = _reduced(s, g, "crs_grade") and cns_g < cns_s and killed
    return ok, (f"lenzilumab: {_grades(g)}; untreated: {_grades(s)}; CNS IL-6 peak {cns_g:.0f} vs {cns_s:.0f} pg/mL; "
                f"tumour min {g['tumor_burden'].min() / g['tumor_burden'][0]:.0%}")  # fmt: skip


def fact7(s: Series) -> tuple[bool, str]:
    """Fact 7 on the standard-dose run."""
    integrity, cns, serum = s["bbb_integrity"], s["cns/IL6"], s["serum/IL6"]
    intact = integrity > 0.97
    # 1 pg/mL floor: at rest both levels are far below any biological effect
    quiet = bool(np.all(cns[intact] <= 0.5 * np.maximum(serum[intact], 1.0))) and s["cns_infiltrate"][intact].max() == 0
    falls = np.nonzero(~intact)[0]
    # after the fall the CNS level rises well above what it was when the BBB began to fail
    after = falls.size > 0 and int(np.argmax(cns)) > falls[0] and cns.max() >= 2.0 * max(cns[falls[0]], 1e-3)
    ratio = float(np.max(cns[intact] / np.maximum(serum[intact], 1.0))) if intact.any() else float("nan")
    return quiet and after, (f"CNS/serum IL-6 <= {ratio:.2f} while BBB > 0.97; CNS peak at BBB integrity "
                             f"{integrity[int(np.argmax(cns))]:.2f} ({cns.max():.3g} pg/mL vs {cns[falls[0]] if falls.size else float('nan'):.3g} when it began to fall); first CNS infiltrate on day {first_day(s, 'cns_infiltrate', 1):.1f}")  # fmt: skip


def graded(peaks: list[float], steps: list[float]) -> tuple[bool, str]:
    """Fact 8's "smoothly": each step raises the peak by more than noise and at most in proportion to the step."""
    ok, folds = True, []
    for lo, hi, step in zip(peaks, peaks[1:], steps):
        fold = hi / max(lo, 1e-12)
        folds.append(f"x{fold:.2f}")
        ok &= SMOOTH_MIN_FOLD < fold <= step**SMOOTH_MAX_SLOPE
    return ok, ", ".join(folds)


def fact8(low: Series, s: Series, high: Series, small: Series, large: Series) -> tuple[bool, str]:
    """Fact 8: peak serum IL-6 over the first 14 days rises smoothly with dose (0.25x, 1x, 4x) and burden (1e9-1e11)."""
    runs = [until(r, SERIES_H) for r in (low, s, high, small, large)]
    peaks = [float(r["serum/IL6"].max()) for r in runs]
    # the peak must lie inside the window: IL-6 at the end well below its maximum
    inside = all(r["serum/IL6"][-1] < 0.8 * r["serum/IL6"].max() for r in runs)
    dose_ok, dose_folds = graded(peaks[:3], [4.0, 4.0])
    burden_ok, burden_folds = graded([peaks[3], peaks[1], peaks[4]], [10.0, 10.0])
    crs = [f"{r['crs_grade'].max():.0f}" for r in runs]
    return dose_ok and burden_ok and inside, (
        f"dose 0.25/1/4x: peak IL-6 {peaks[0]:.3g}/{peaks[1]:.3g}/{peaks[2]:.3g} pg/mL ({dose_folds}; allowed "
        f"x{SMOOTH_MIN_FOLD:g}-x4 per step), max CRS {crs[0]}/{crs[1]}/{crs[2]}; burden 1e9/1e10/1e11: "
        f"{peaks[3]:.3g}/{peaks[1]:.3g}/{peaks[4]:.3g} pg/mL ({burden_folds}; allowed x{SMOOTH_MIN_FOLD:g}-x10), "
        f"max CRS {crs[3]}/{crs[1]}/{crs[4]}; peaks inside the {SERIES_H / 24:g}-day window: {'yes' if inside else 'no'}")  # fmt: skip


def fact9(s: Series) -> tuple[bool, str]:
    """Fact 9: serum IL-6 peaks within two days of the CAR-T peak (standard run)."""
    il6, cart = peak_day(s, "serum/IL6"), peak_day({"time_h": s["time_h"], "cart": cart_cells(s)}, "cart")
    return abs(il6 - cart) <= 2.0, f"serum IL-6 peak day {il6:.1f}, CAR-T peak day {cart:.1f} ({abs(il6 - cart):.1f} d apart, allowed 2)"


def fact10(*runs: Series) -> tuple[bool, str]:
    """Fact 10: every run with CRS grade >= 3 peaks at serum IL-6 of 1e3-1e4 pg/mL; some run reaches grade 4."""
    severe = [float(r["serum/IL6"].max()) for r in runs if r["crs_grade"].max() >= 3]
    in_range = bool(severe) and all(SEVERE_IL6_PG_ML[0] <= p <= SEVERE_IL6_PG_ML[1] for p in severe)
    worst = max(int(r["crs_grade"].max()) for r in runs)
    grades = "/".join(f"{r['crs_grade'].max():.0f}" for r in runs)
    il6 = "/".join(f"{r['serum/IL6'].max():.3g}" for r in runs)
    return in_range and worst >= 4, (f"max CRS {grades}, peak IL-6 {il6} pg/mL (standard / 4x dose / 1e11 cells / high risk); "
                                     f"{len(severe)} severe run(s), allowed IL-6 {SEVERE_IL6_PG_ML[0]:g}-{SEVERE_IL6_PG_ML[1]:g}; worst grade {worst} (needed 4)")  # fmt: skip


def _maxes(runs: tuple[Series, ...], key: str) -> str:
    return "/".join(f"{r[key].max():.0f}" for r in runs)


def cns_made(s: Series) -> tuple[bool, str]:
    """During ICANS grade >= 3: is some cytokine's CNS level above its serum level (and >= 1 pg/mL)?"""
    severe = s["icans_grade"] >= 3
    best, name = 0.0, "-"
    for cyt in cytokines(s):
        cns, serum = s[f"cns/{cyt}"][severe], s[f"serum/{cyt}"][severe]
        if cns.size and (ratio := float(np.max(np.where(cns >= 1.0, cns / np.maximum(serum, 1e-12), 0.0)))) > best:
            best, name = ratio, cyt
    return best > 1.0, f"CNS/serum {name} x{best:.2f}"


def fact11(s: Series, *severe_candidates: Series) -> tuple[bool, str]:
    """Fact 11: ICANS lasts longer than CRS (standard patient followed to day 21); severe ICANS comes with CNS levels above serum.

    A run that ends during an episode gives only a lower bound of its duration: the check passes
    on it only if even that bound exceeds the other syndrome's duration.
    """
    crs_d, icans_d = days_at_or_above(s, "crs_grade"), days_at_or_above(s, "icans_grade")
    severe = [r for r in (s, *severe_candidates) if r["icans_grade"].max() >= 3]
    made = [cns_made(r) for r in severe]
    crs_open, icans_open = s["crs_grade"][-1] >= 1, s["icans_grade"][-1] >= 1
    ok = icans_d > crs_d and not crs_open and bool(made) and all(m for m, _ in made)
    detail = "; ".join(text for _, text in made) if made else "no run reached ICANS grade 3"
    return ok, (f"day {s['time_h'][-1] / 24:.0f} follow-up: ICANS {icans_d:.1f} d ({_episode_end(s, 'icans_grade', icans_open)}) "
                f"vs CRS {crs_d:.1f} d ({_episode_end(s, 'crs_grade', crs_open)}) at grade >= 1 (label: 17 vs 7); "
                f"max ICANS {_maxes((s, *severe_candidates), 'icans_grade')} "
                f"(standard / 4x dose / 1e11 cells); during ICANS >= 3: {detail}")  # fmt: skip


def _episode_end(s: Series, key: str, still_open: bool) -> str:
    if still_open:
        return "still going on at the end: a lower bound"
    hit = np.nonzero(s[key] >= 1)[0]
    return f"ended day {s['time_h'][hit[-1]] / 24:.1f}" if hit.size else "none"


#: Lugano 2014 (Cheson, J Clin Oncol 2014): a partial response is a >= 50 % fall of the sum of the
#: products of lesion diameters (an area, ~ cells^(2/3)), i.e. a fall of cells to 0.5^1.5 = 35 %
RESPONDED_FRACTION = 0.5**1.5


def tumour_left(s: Series) -> float:
    """Tumour at the end as a fraction of its start."""
    return float(s["tumor_burden"][-1] / max(s["tumor_burden"][0], 1.0))


def fact12(s: Series, poor: Series) -> tuple[bool, str]:
    """Fact 12: the standard patient responds (Lugano-like PR or better); a quarter dose against 1e11 cells does not."""
    ok = tumour_left(s) <= RESPONDED_FRACTION < tumour_left(poor)
    return ok, (f"low dose, high burden: tumour at day {poor['time_h'][-1] / 24:.0f} {tumour_left(poor):.0%} of start "
                f"(no response: above {RESPONDED_FRACTION:.0%}); standard: {tumour_left(s):.0%} at day {s['time_h'][-1] / 24:.0f}")  # fmt: skip
def fact13(s: Series, half: Series) -> tuple[bool, str]:
    """Fact 13: the standard patient and the same patient sampled by half the tumour agents give the same answers.

    Within the noise of one seed: peak serum IL-6 within a factor 1.5, max CRS and ICANS
    grades within one grade, the tumour cleared in both or in neither.
    """
    peak_s, peak_h = float(s["serum/IL6"].max()), float(half["serum/IL6"].max())
    ratio = peak_h / max(peak_s, 1e-9)
    crs = abs(float(half["crs_grade"].max()) - float(s["crs_grade"].max()))
    icans = abs(float(half["icans_grade"].max()) - float(s["icans_grade"].max()))
    cleared = [bool(x["tumor_burden"].min() <= 0.02 * x["tumor_burden"][0]) for x in (s, half)]
    ok = 1 / 1.5 <= ratio <= 1.5 and crs <= 1 and icans <= 1 and cleared[0] == cleared[1]
    return ok, (f"peak IL-6 {peak_h:.0f} vs {peak_s:.0f} pg/mL (x{ratio:.2f}); max CRS {half['crs_grade'].max():.0f} vs "
                f"{s['crs_grade'].max():.0f}, ICANS {half['icans_grade'].max():.0f} vs {s['icans_grade'].max():.0f}; "
                f"tumour cleared {cleared[1]} vs {cleared[0]} (half vs full sampling)")  # fmt: skip


FACTS: tuple[Fact, ...] = (
    Fact(1, "No CAR-T cells: serum IL-6 stays at a physiological resting level (a few pg/mL), grades 0, the tumour keeps growing",
         ("no_cart",), fact1),
    Fact(2, "Standard dose: CAR-T expand, peak within day 7-14 and contract; B cells cleared", ("standard",), fact2),
    Fact(3, "Serum IL-6 >10x its resting level within days; CRS begins day 1-3; ICANS begins later than CRS", ("no_cart", "standard"), fact3),
    Fact(4, "Monocyte/macrophage depletion by drug largely abolishes CRS (worst grade and grade-days) while tumour killing goes on",
         ("standard", "depletion"), fact4),
    Fact(5, "Early IL-1 blockade (anakinra 100 mg every 12 h x 10 d) lowers the worst grade and grade-days of both CRS and ICANS",
         ("standard", "anakinra"), fact5),
    Fact(6, "GM-CSF neutralisation (lenzilumab 10 mg/kg daily x 10) lowers the worst CRS grade, grade-days and CNS IL-6; tumour killing kept",
         ("standard", "lenzilumab"), fact6),
    Fact(7, "CNS cytokines and CNS infiltration rise only after BBB integrity falls", ("standard",), fact7),
    Fact(8, "Peak serum IL-6 (first 14 days) rises smoothly with CAR-T dose (0.25x, 1x, 4x) and tumour burden (1e9, 1e10, 1e11 cells)",
         ("dose_0.25x", "standard", "dose_4x", "burden_1e9", "burden_1e11"), fact8),
    Fact(9, "Serum IL-6 peaks within two days of the CAR-T peak", ("standard",), fact9),
    Fact(10, "Severe CRS reaches serum IL-6 of 1e3-1e4 pg/mL; some configuration reaches CRS grade 4 (4x dose, 1e11 cells, and a "
             "high-risk patient: 4x dose with twice the pre-infusion Ang-2/Ang-1; 14 days)",
         ("standard", "dose_4x", "burden_1e11", "high_risk"), fact10),
    Fact(11, "ICANS lasts longer than CRS in the default patient (followed to day 21); severe ICANS comes with CNS levels above serum",
         ("followup", "dose_4x", "burden_1e11"), fact11),
    Fact(12, "Some patients do not respond: a quarter dose against 1e11 tumour cells (10 days) leaves more than 35 % of the tumour",
         ("standard", "low_dose_high_burden"), fact12),
    Fact(13, "Answers do not depend on how finely the lattice samples the patient (half the tumour agents)", ("standard", "sampling_half"), fact13),
)  # fmt: skip
