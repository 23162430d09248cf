"""Clinical readouts — MODEL SURROGATES of the ASTCT consensus grades (Lee et al., BBMT 2019).

* Fever: temperature rises with serum pyrogens (IL-6, IL-1β, TNF-α) as a Hill response.
* Hypotension and hypoxia: graded from the systemic capillary leak (endothelium module).
* CRS grade: 0 without fever (>= 38 °C); else the worst of 1, the hypotension grade and the
  hypoxia grade (ASTCT: fever plus hypotension/hypoxia set the grade).
* ICANS grade from an ICE-score surrogate: ``ICE = 10 (1 - X^n / (X^n + h^n))`` where ``X`` is the
  CNS inflammation index (mean CNS cytokines in units of their half-max); ICE 7-9 -> 1,
  3-6 -> 2, 0-2 -> 3; grade 4 when the BBB has broken down (cerebral-oedema surrogate).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from carabm.biology import rules
from carabm.io.config import CytokineMap, Strict, cytokine_map

FEVER_C = 38.0


class Clinical(Strict):
    """Model surrogates of the ASTCT CRS and ICANS grades (labelled as model outputs)."""

    fever_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL6=80.0, IL1b=20.0, TNFa=30.0), description="serum pyrogen level for half of the maximal fever [pg/mL]; assumed"
    )
    fever_max_c: float = Field(3.0, gt=0, description="maximal temperature rise [degC]; assumed (40 degC peak)")
    hypotension_leak: list[float] = Field(
        [0.25, 0.5, 0.75], min_length=3, max_length=3, description="systemic leak (0..1) for grade-2, -3, -4 hypotension; assumed"
    )
    hypoxia_leak: list[float] = Field([0.3, 0.55, 0.8], min_length=3, max_length=3, description="systemic leak (0..1) for grade-2, -3, -4 hypoxia; assumed")
    ice_half_max: float = Field(1.0, gt=0, description="CNS inflammation index halving the ICE score; assumed")
    ice_hill: float = Field(2.0, gt=0, description="Hill power of the ICE-score fall [1]; assumed")
    cns_signal_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL6=200.0, IL1b=60.0, TNFa=80.0, IFNg=100.0),
        description="mean CNS level counting as one unit of the inflammation index, per cytokine [pg/mL]; assumed",
    )
    edema_integrity: float = Field(0.15, ge=0, le=1, description="mean BBB integrity below which cerebral edema (ICANS 4) is modelled; assumed")


def temperature_c(serum: Mapping[str, float], p: Clinical) -> float:
    """Body temperature [°C] from serum pyrogens."""
    pyrogen = rules.any_of(*[rules.hill(serum[name], h) for name, h in p.fever_half_max_pg_ml.as_dict().items()])
    return 37.0 + p.fever_max_c * float(pyrogen)


def organ_grade(leak: float, thresholds: list[float]) -> int:
    """1 + number of thresholds the leak reaches (grade 2-4), or 0 below the first."""
    reached = sum(leak >= t for t in thresholds)
    return 1 + reached if reached else 0


def crs_grade(temperature: float, leak: float, p: Clinical, fever_masked: bool = False) -> int:
    """ASTCT-like CRS grade 0-4 (surrogate). ``fever_masked``: antipyretic therapy given (fever not required)."""
    if temperature < FEVER_C and not (fever_masked and leak >= p.hypotension_leak[0]):
        return 0
    worst = max(organ_grade(leak, p.hypotension_leak), organ_grade(leak, p.hypoxia_leak))
    return max(1 if temperature >= FEVER_C else 0, worst)


def cns_inflammation(cns: Mapping[str, float], p: Clinical) -> float:
    """CNS inflammation index: sum of mean CNS levels over their half-max."""
    return float(sum(cns[name] / h for name, h in p.cns_signal_half_max_pg_ml.as_dict().items()))


def ice_score(index: float, p: Clinical) -> float:
    """ICE-score surrogate (10 = normal, 0 = worst), continuous."""
    return 10.0 * (1.0 - rules.hill(index, p.ice_half_max, p.ice_hill))


def icans_grade(ice: float, bbb_integrity: float, p: Clinical) -> int:
    """ICANS grade 0-4 (surrogate) from the ICE score and BBB breakdown."""
    score = round(ice)
    if score >= 10:
        grade = 0
    elif score >= 7:
        grade = 1
    elif score >= 3:
        grade = 2
    else:
        grade = 3
    if grade >= 1 and bbb_integrity < p.edema_integrity:
        grade = 4
    return grade
