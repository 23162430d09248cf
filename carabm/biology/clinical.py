"""Clinical readouts — MODEL SURROGATES of the ASTCT consensus grades (Lee et al., BBMT 2019).

CRS (fever, then the worse of hypotension and hypoxia):

* Fever: temperature rises with serum pyrogens (IL-6, IL-1β, TNF-α) as a Hill response.
* Hypotension: a vasopressor-need surrogate (0..1) from the endothelium's vasodilation (NO)
  and the volume lost to the capillary leak, ``any_of(V, s L)``; thresholds for grade 2 (fluids
  only), 3 (one vasopressor) and 4 (several vasopressors).
* Hypoxia: an oxygen-need surrogate, the pulmonary share of the capillary leak ``L``;
  thresholds for grade 2 (low-flow O2), 3 (high-flow) and 4 (positive pressure).
* Grade 0 without fever (>= 38 °C) unless fever is masked by a drug that masks it (ASTCT:
  tocilizumab or corticosteroids; each drug declares it) and an organ grade is >= 2.

ICANS is the worst of its domains, each a labelled surrogate with its own readout:

* ICE score ``10 (1 - hill(X))``, ``X`` the CNS inflammation index (mean CNS cytokines over their
  half-max): 7-9 -> 1, 3-6 -> 2, 0-2 -> 3.
* Depressed level of consciousness ``hill(X, h_loc)`` (a deeper encephalopathy than the ICE
  fall): thresholds for grade 1 (awakens spontaneously) to 4 (unarousable).
* Seizure propensity: OR of Hill responses to CNS IL-1β and TNF-α (pro-convulsant cytokines;
  Santomasso, Cancer Discov 2018: excitatory neurotoxicity): a seizure (3), a prolonged one (4).
* Motor: the deepest local BBB breakdown ``1 - min integrity`` (a focal lesion): grade 4.
* Raised ICP / cerebral oedema: the share of BBB voxels below ``edema_integrity``: focal (3),
  diffuse (4).
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
    leak_hypotension_share: float = Field(
        0.5, ge=0, le=1, description="weight of the capillary leak (intravascular volume loss) in the vasopressor-need surrogate [1]; assumed"
    )
    hypotension_thresholds: list[float] = Field(
        [0.3, 0.55, 0.8], min_length=3, max_length=3,
        description="vasopressor-need surrogate (0..1) for grade-2 (fluids), -3 (one vasopressor), -4 (several) hypotension; assumed",
    )  # fmt: skip
    hypoxia_thresholds: list[float] = Field(
        [0.25, 0.5, 0.75], min_length=3, max_length=3,
        description="oxygen-need surrogate (capillary leak, 0..1) for grade-2 (low-flow), -3 (high-flow), -4 (positive pressure) hypoxia; assumed",
    )  # fmt: skip
    ice_half_max: float = Field(1.0, gt=0, description="CNS inflammation index halving the ICE score; assumed")
    ice_hill: float = Field(2.0, gt=0, description="Hill power of the ICE-score fall and of the consciousness depression [1]; assumed")
    cns_signal_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL6=200.0, IL1b=60.0, TNFa=80.0, IFNg=100.0),
        description="mean CNS level counting as one unit of the inflammation index, per cytokine [pg/mL]; assumed",
    )
    consciousness_half_max: float = Field(
        3.0, gt=0, description="CNS inflammation index for half-maximal depression of consciousness; assumed (deeper than the ICE fall: 3x its half-max)"
    )
    consciousness_thresholds: list[float] = Field(
        [0.3, 0.6, 0.8, 0.9], min_length=4, max_length=4,
        description="consciousness-depression surrogate (0..1) for grade 1 (awakens spontaneously), 2 (to voice), 3 (to touch), 4 (unarousable); assumed",
    )  # fmt: skip
    seizure_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL1b=300.0, TNFa=300.0),
        description="mean CNS level for half-maximal seizure propensity, per cytokine [pg/mL]; assumed (IL-1b and TNF-a lower the seizure threshold)",
    )
    seizure_thresholds: list[float] = Field(
        [0.5, 0.8], min_length=2, max_length=2, description="seizure propensity (0..1) for a seizure (grade 3) and a prolonged seizure (grade 4); assumed"
    )
    motor_breakdown: float = Field(0.95, gt=0, le=1, description="local BBB breakdown (1 - min integrity) modelled as a focal lesion with deep motor weakness (ICANS 4); assumed")
    edema_integrity: float = Field(0.15, ge=0, le=1, description="BBB voxel integrity below which the voxel counts as oedematous; assumed")
    edema_shares: list[float] = Field(
        [0.05, 0.5], min_length=2, max_length=2, description="share of BBB voxels oedematous for focal (ICANS 3) and diffuse (ICANS 4) cerebral oedema; assumed"
    )


def temperature_c(serum: Mapping[str, float], p: Clinical) -> float:
    """Body temperature [°C] from serum pyrogens."""
    pyrogen = rules.any_of(*[rules.hill(serum[name], h) for name, h in p.fever_half_max_pg_ml.as_dict().items()])
    return 37.0 + p.fever_max_c * float(pyrogen)


def threshold_grade(value: float, thresholds: list[float], first: int) -> int:
    """``first - 1`` + number of thresholds reached, or 0 below the first (thresholds rising)."""
    reached = sum(value >= t for t in thresholds)
    return first - 1 + reached if reached else 0


def vasopressor_need(vasodilation: float, leak: float, p: Clinical) -> float:
    """Hypotension surrogate (0..1): NO vasodilation OR the volume lost to the capillary leak."""
    return float(rules.any_of(vasodilation, p.leak_hypotension_share * leak))


def oxygen_need(leak: float) -> float:
    """Hypoxia surrogate (0..1): the pulmonary capillary leak."""
    return float(leak)


def crs_grade(temperature: float, vasopressor: float, oxygen: float, p: Clinical, fever_masked: bool = False) -> int:
    """ASTCT-like CRS grade 0-4 (surrogate). ``fever_masked``: a fever-masking drug given (fever then not required)."""
    organ = max(threshold_grade(vasopressor, p.hypotension_thresholds, 2), threshold_grade(oxygen, p.hypoxia_thresholds, 2))
    if temperature < FEVER_C and not (fever_masked and organ >= 2):
        return 0
    return max(1, organ)


def cns_inflammation(cns: Mapping[str, float], p: Clinical) -> float:
    """CNS inflammation index: sum of mean CNS levels over their half-max."""
    return float(sum(cns[name] / h for name, h in p.cns_signal_half_max_pg_ml.as_dict().items()))


def ice_score(index: float, p: Clinical) -> float:
    """ICE-score surrogate (10 = normal, 0 = worst), continuous."""
    return 10.0 * (1.0 - rules.hill(index, p.ice_half_max, p.ice_hill))


def consciousness_depression(index: float, p: Clinical) -> float:
    """Depressed level of consciousness surrogate (0 = alert, 1 = unarousable)."""
    return float(rules.hill(index, p.consciousness_half_max, p.ice_hill))


def seizure_propensity(cns: Mapping[str, float], p: Clinical) -> float:
    """Seizure propensity surrogate (0..1) from the CNS's pro-convulsant cytokines."""
    return float(rules.any_of(*[rules.hill(cns[name], h) for name, h in p.seizure_half_max_pg_ml.as_dict().items()]))


def ice_grade(ice: float) -> int:
    """ASTCT grade of the ICE domain: 10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3."""
    score = round(ice)
    return 0 if score >= 10 else 1 if score >= 7 else 2 if score >= 3 else 3


def icans_domains(ice: float, consciousness: float, seizure: float, motor: float, edema_share: float, p: Clinical) -> dict[str, int]:
    """Grade of each ICANS domain (ASTCT table; surrogates)."""
    return {
        "ice": ice_grade(ice),
        "consciousness": threshold_grade(consciousness, p.consciousness_thresholds, 1),
        "seizure": threshold_grade(seizure, p.seizure_thresholds, 3),
        "motor": 4 if motor >= p.motor_breakdown else 0,
        "edema": threshold_grade(edema_share, p.edema_shares, 3),
    }


def icans_grade(domains: Mapping[str, int]) -> int:
    """ICANS grade 0-4: the worst of its domains (Lee, BBMT 2019)."""
    return max(domains.values())
