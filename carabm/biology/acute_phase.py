"""Acute-phase readouts: serum CRP made by the liver under IL-6, and serum ferritin released by
activated macrophages; model surrogates of the clinical markers, two host scalar ODEs.

CRP: ``dCRP/dt = k (CRP_max hill(IL6_free, h) - CRP)`` with ``k = ln 2 / 19 h`` (the plasma
half-life of CRP is about 19 h whatever its level, so synthesis alone sets the level; Pepys &
Hirschfield, J Clin Invest 2003). Hepatocytes respond to IL-6 through the IL-6 receptor, so
tocilizumab and siltuximab lower CRP (free IL-6 only). The resting level follows from the
baseline serum IL-6.

Ferritin: ``dF/dt = k_F (F_0 - F) + r sum(a) / (scale V_blood)``: basal turnover holds the
healthy level ``F_0``; activated macrophages release ferritin in proportion to their summed
activation ``sum(a)`` (the lattice's macrophages stand for ``1/scale`` as many in the patient).
Hyperferritinaemia marks macrophage activation in CRS (Teachey, Cancer Discov 2016).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from carabm.biology import rules
from carabm.io.config import Strict

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

#: the model part (``model.parts``) holding the acute-phase state
PART = "acute_phase"
#: the cell type whose activation releases ferritin
FERRITIN_SOURCE = "macrophage"


class AcutePhase(Strict):
    """CRP (hepatic, IL-6 driven) and ferritin (macrophage activation): model surrogates of the clinical markers."""

    crp_half_life_h: float = Field(19.0, gt=0, description="plasma half-life of CRP [h]; Pepys & Hirschfield, J Clin Invest 2003 (about 19 h, constant)")
    crp_max_mg_l: float = Field(
        500.0, gt=0, description="CRP level under sustained saturating IL-6 [mg/L]; assumed (CRP can exceed 500 mg/L in the acute phase; Pepys & Hirschfield 2003)"
    )
    crp_il6_half_max_pg_ml: float = Field(
        1000.0, gt=0,
        description="free serum IL-6 for half-maximal CRP synthesis [pg/mL]; assumed: with the baseline IL-6 it gives a resting CRP of "
        "about 1.5 mg/L (healthy median 0.8 mg/L, Pepys & Hirschfield 2003) and some 100-250 mg/L at the IL-6 levels of severe CRS",
    )
    ferritin_baseline_ng_ml: float = Field(100.0, ge=0, description="healthy serum ferritin [ng/mL]; assumed (within the normal 30-300 ng/mL)")
    ferritin_half_life_h: float = Field(30.0, gt=0, description="serum ferritin half-life [h]; assumed (hyperferritinaemia resolves over days once macrophage activation ends)")
    ferritin_release_ng_cell_h: float = Field(
        7e-4, ge=0,
        description="ferritin released per fully activated macrophage [ng/cell/h]; assumed: all macrophages of the default patient's "
        "tumour sites fully activated for days raise serum ferritin to ~1e4 ng/mL (severe CRS: 1e3-1e5; Teachey 2016)",
    )


class AcutePhaseState:
    """Serum CRP [mg/L] and ferritin [ng/mL] (host scalars, checkpointed)."""

    def __init__(self, crp_mg_l: float, ferritin_ng_ml: float) -> None:
        self.crp_mg_l = float(crp_mg_l)
        self.ferritin_ng_ml = float(ferritin_ng_ml)

    def checkpoint_state(self) -> dict[str, Any]:
        """Both levels."""
        return {"crp_mg_l": self.crp_mg_l, "ferritin_ng_ml": self.ferritin_ng_ml}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take the levels of :meth:`checkpoint_state`."""
        self.crp_mg_l = float(state["crp_mg_l"])
        self.ferritin_ng_ml = float(state["ferritin_ng_ml"])


def crp_target_mg_l(free_il6_pg_ml: float, p: AcutePhase) -> float:
    """The CRP level that a sustained free serum IL-6 level holds [mg/L]."""
    return p.crp_max_mg_l * float(rules.hill(free_il6_pg_ml, p.crp_il6_half_max_pg_ml))


def _free_il6(model: CrsModel) -> float:
    return float(model.serum[model.index["IL6"]]) * model.effects.signal_free_fraction_scalar("blood")["IL6"]


def setup(model: CrsModel) -> None:
    """At t = 0: CRP at the steady state of the initial serum IL-6, ferritin at its healthy level."""
    p = model.config.acute_phase
    model.parts[PART] = AcutePhaseState(crp_target_mg_l(_free_il6(model), p), p.ferritin_baseline_ng_ml)


def activation_sum(model: CrsModel) -> float:
    """Summed activation of the lattice's ferritin-releasing macrophages, from the last readouts (no device read)."""
    last = model.last_readouts
    return last.get(f"mean_activation.{FERRITIN_SOURCE}", 0.0) * last.get(f"counts.{FERRITIN_SOURCE}", 0.0)


def advance(model: CrsModel) -> None:
    """One step of both ODEs, exact for inputs held over the step."""
    p = model.config.acute_phase
    state: AcutePhaseState = model.parts[PART]
    dt_h = model.dt_h
    k = rules.rate_per_h_from_half_life(p.crp_half_life_h)
    target = crp_target_mg_l(_free_il6(model), p)
    state.crp_mg_l = target + (state.crp_mg_l - target) * math.exp(-k * dt_h)
    k_f = rules.rate_per_h_from_half_life(p.ferritin_half_life_h)
    volume_ml = model.config.patient.blood_volume_ml
    release_ng_ml_h = p.ferritin_release_ng_cell_h * activation_sum(model) / (model.scale * volume_ml)
    target_f = p.ferritin_baseline_ng_ml + release_ng_ml_h / k_f
    state.ferritin_ng_ml = target_f + (state.ferritin_ng_ml - target_f) * math.exp(-k_f * dt_h)


def readouts(model: CrsModel) -> dict[str, float]:
    """The time-series entries ``crp_mg_l`` and ``ferritin_ng_ml``."""
    state: AcutePhaseState = model.parts[PART]
    return {"crp_mg_l": state.crp_mg_l, "ferritin_ng_ml": state.ferritin_ng_ml}
