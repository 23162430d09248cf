"""VALIDATION.md's scenarios and facts as code, shared by ``scripts/validate.py`` and the tests.

A scenario is a list of ``--set`` overrides on a base config; a fact is a check on the time
series of one or more scenarios that returns (passed, the model's numbers as text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import carabm.biology  # noqa: F401  (registers the built-in model in the catalog)
from carabm.io.config import load_config
from carabm.simulation import Simulation

Series = dict[str, np.ndarray]

EARLY = "start_h: 0, every_h: 24, max_doses: 10"
SCENARIOS: dict[str, list[str]] = {
    "no_cart": ["cells.cart.dose=0"],
    "standard": [],
    "depletion": ["therapies=[{drug: monocyte_depletion, start_h: 0, every_h: 72, max_doses: 5}, "
                  "{drug: macrophage_depletion, start_h: 0, every_h: 72, max_doses: 5}]"],
    "anakinra": [f"therapies=[{{drug: anakinra, {EARLY}}}]"],
    "lenzilumab": [f"therapies=[{{drug: lenzilumab, {EARLY}}}]"],
    "tocilizumab_grade2": ["therapies=[{drug: tocilizumab, when: 'crs_grade >= 2', max_doses: 4, min_interval_h: 8}]"],
}  # fmt: skip
DOSE_SERIES = {f"dose_{f:g}x": [f"cells.cart.dose={1.4e8 * f:g}"] for f in (0.25, 1.0, 4.0)}


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


def first_day(s: Series, key: str, threshold: float) -> float:
    """Day on which ``key`` first reaches ``threshold`` (inf if never)."""
    hit = np.nonzero(s[key] >= threshold)[0]
    return float(s["time_h"][hit[0]] / 24.0) if hit.size else float("inf")


def grade_burden(s: Series, key: str) -> float:
    """Grade-days: the time integral of a grade series (a severity-and-duration measure)."""
    return float(np.trapezoid(s[key], s["time_h"]) / 24.0)


def _baseline_il6(base: Series) -> float:
    return max(float(base["serum/IL6"].max()), 1e-3)


@dataclass(frozen=True)
class Fact:
    """One fact of VALIDATION.md and its check."""

    number: int
    text: str
    scenarios: tuple[str, ...]
    check: Callable[..., tuple[bool, str]]


def fact1(base: Series) -> tuple[bool, str]:
    """Fact 1 on the no-CAR-T run."""
    ok = base["crs_grade"].max() == 0 and base["icans_grade"].max() == 0 and base["tumor_burden"][-1] > 1.2 * base["tumor_burden"][0]
    return ok, (f"max CRS {base['crs_grade'].max():.0f}, max ICANS {base['icans_grade'].max():.0f}, peak serum IL-6 "
                f"{base['serum/IL6'].max():.3g} pg/mL, tumour x{base['tumor_burden'][-1] / base['tumor_burden'][0]:.2f}")  # fmt: skip


def fact2(s: Series) -> tuple[bool, str]:
    """Fact 2 on the standard-dose run."""
    cart = s["counts/cart"]
    peak = int(np.argmax(cart))
    peak_day = s["time_h"][peak] / 24.0
    cleared = first_day({"time_h": s["time_h"], "b": -s["tumor_burden"]}, "b", -0.02 * s["tumor_burden"][0])
    ok = cart[peak] >= 20 * max(cart[0], 1) and 4.0 <= peak_day <= 14.0 and cart[-1] < 0.5 * cart[peak] and cleared < float("inf")
    return ok, f"CAR-T x{cart[peak] / max(cart[0], 1):.0f} peak on day {peak_day:.1f}, final/peak {cart[-1] / cart[peak]:.2f}, B cells <2% on day {cleared:.1f}"


def fact3(base: Series, s: Series) -> tuple[bool, str]:
    """Fact 3: baseline (no CAR-T) and standard runs."""
    threshold = 10 * _baseline_il6(base)
    rise = first_day(s, "serum/IL6", threshold)
    crs, icans = first_day(s, "crs_grade", 1), first_day(s, "icans_grade", 1)
    ok = rise <= 3.0 and crs <= 3.0 and s["crs_grade"].max() >= 2 and s["icans_grade"].max() >= 1 and icans > crs
    return ok, (f"IL-6 >10x baseline on day {rise:.1f} (peak {s['serum/IL6'].max():.0f} pg/mL); CRS onset day {crs:.1f} "
                f"(max {s['crs_grade'].max():.0f}); ICANS onset day {icans:.1f} (max {s['icans_grade'].max():.0f})")  # fmt: skip


def fact4(s: Series, d: Series) -> tuple[bool, str]:
    """Fact 4: standard and depletion runs."""
    ok = d["crs_grade"].max() <= 1 and s["crs_grade"].max() >= 2 and d["tumor_burden"].min() <= 0.1 * d["tumor_burden"][0]
    return ok, (f"max CRS {d['crs_grade'].max():.0f} vs {s['crs_grade'].max():.0f} untreated; peak IL-6 {d['serum/IL6'].max():.0f} "
                f"vs {s['serum/IL6'].max():.0f} pg/mL; tumour min {d['tumor_burden'].min() / d['tumor_burden'][0]:.0%} of start")  # fmt: skip


def fact5(s: Series, a: Series) -> tuple[bool, str]:
    """Fact 5: standard and early-anakinra runs."""
    crs_s, crs_a = grade_burden(s, "crs_grade"), grade_burden(a, "crs_grade")
    ic_s, ic_a = grade_burden(s, "icans_grade"), grade_burden(a, "icans_grade")
    ok = crs_a < crs_s and ic_a < ic_s and a["icans_grade"].max() <= s["icans_grade"].max() and a["crs_grade"].max() <= s["crs_grade"].max()
    return ok, f"CRS grade-days {crs_a:.1f} vs {crs_s:.1f}; ICANS grade-days {ic_a:.1f} vs {ic_s:.1f} (anakinra vs untreated)"


def fact6(s: Series, g: Series) -> tuple[bool, str]:
    """Fact 6: standard and lenzilumab runs."""
    crs_s, crs_g = grade_burden(s, "crs_grade"), grade_burden(g, "crs_grade")
    cns_s, cns_g = s["cns/IL6"].max(), g["cns/IL6"].max()
    killed = g["tumor_burden"].min() <= 0.1 * g["tumor_burden"][0]
    ok = crs_g < crs_s and cns_g < cns_s and killed
    return ok, f"CRS grade-days {crs_g:.1f} vs {crs_s:.1f}; CNS IL-6 peak {cns_g:.0f} vs {cns_s:.0f} pg/mL; tumour min {g['tumor_burden'].min() / g['tumor_burden'][0]:.0%}"


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


FACTS: tuple[Fact, ...] = (
    Fact(1, "No CAR-T cells: no cytokine storm (grades 0) and the tumour keeps growing", ("no_cart",), fact1),
    Fact(2, "Standard dose: CAR-T expand, peak around day 7-14 and contract; B cells cleared", ("standard",), fact2),
    Fact(3, "Serum IL-6 rises within days; CRS begins day 1-3; ICANS begins later than CRS", ("no_cart", "standard"), fact3),
    Fact(4, "Monocyte/macrophage depletion largely abolishes CRS while tumour killing goes on", ("standard", "depletion"), fact4),
    Fact(5, "Early IL-1 blockade (anakinra) reduces both CRS and ICANS", ("standard", "anakinra"), fact5),
    Fact(6, "GM-CSF neutralisation reduces CRS and CNS inflammation, tumour killing preserved", ("standard", "lenzilumab"), fact6),
    Fact(7, "CNS cytokines and CNS infiltration rise only after BBB integrity falls", ("standard",), fact7),
)
