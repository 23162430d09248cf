"""Therapies: dosing schedules and clinical triggers, one-compartment PK, and PD effects.

Each step :func:`administer` gives the doses that are due (by ``start_h``/``every_h`` or
by a ``when`` trigger evaluated on the previous step's readouts, with a minimum interval
and a maximum number of doses), :func:`advance_pk` moves plasma levels on exactly, and
:meth:`Effects.update` turns levels into the multipliers the cell rules read (Emax law:
``effect = Emax C / (C + EC50)``). CNS exposure is ``C (f + (1 - f)(1 - I))`` with ``f``
the drug's intact-BBB ratio and ``I`` the mean BBB integrity: antibodies hardly enter an
intact brain, and a breached BBB lets drugs in.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from carabm.biology import rules
from carabm.biology.triggers import Trigger, parse_trigger
from carabm.engine.lattice import CNS
from carabm.errors import CheckpointError
from carabm.io.catalog import CATALOG, Drug
from carabm.io.config import Config, Therapy

NEUTRALISED = {"IL6": "IL6", "IL1": "IL1b", "GMCSF": "GMCSF", "IFNg": "IFNg", "IL6R": "IL6"}


def occupancy(conc_ug_ml: float, drug: Drug) -> float:
    """Emax law: fraction of the maximal effect at a concentration."""
    return drug.emax * conc_ug_ml / (conc_ug_ml + drug.ec50_ug_ml) if conc_ug_ml > 0 else 0.0


@dataclass
class Plasma:
    """One-compartment PK of one drug: depot (mg, sc/oral) and plasma concentration (µg/mL)."""

    drug: Drug
    volume_l: float
    depot_mg: float = 0.0
    conc_ug_ml: float = 0.0
    peak_ug_ml: float = 0.0

    def dose(self, mg: float) -> None:
        """Give a dose: IV into plasma, SC/oral into the absorption depot."""
        if self.drug.absorption_per_h is None:
            self.conc_ug_ml += mg / self.volume_l  # mg/L = µg/mL
        else:
            self.depot_mg += mg
        self.peak_ug_ml = max(self.peak_ug_ml, mg / self.volume_l)

    def cns_ug_ml(self, bbb_integrity: float) -> float:
        """CNS exposure [µg/mL]: the CSF/plasma ratio through an intact BBB, rising to plasma level as it opens."""
        csf = self.drug.csf_fraction
        return self.conc_ug_ml * (csf + (1 - csf) * (1 - bbb_integrity))

    def advance(self, dt_h: float) -> None:
        """Exact one-compartment step (first-order absorption and elimination)."""
        k = math.log(2.0) / self.drug.half_life_h
        decay = math.exp(-k * dt_h)
        ka = self.drug.absorption_per_h
        if ka is None or self.depot_mg == 0.0:
            self.conc_ug_ml *= decay
            return
        absorbed = math.exp(-ka * dt_h)
        if abs(ka - k) < 1e-12:
            gain = self.depot_mg / self.volume_l * ka * dt_h * decay
        else:
            gain = self.depot_mg / self.volume_l * ka / (ka - k) * (decay - absorbed)
        self.conc_ug_ml = self.conc_ug_ml * decay + gain
        self.depot_mg *= absorbed


@dataclass
class Schedule:
    """When one configured therapy is due."""

    therapy: Therapy
    trigger: Trigger | None
    doses_given: int = 0
    last_dose_h: float | None = None
    #: no dose before this time [h]; None: the time of the next check (a schedule new in a branch starts there)
    not_before_h: float | None = 0.0

    def due(self, time_h: float, readouts: dict[str, float], dt_h: float) -> str | None:
        """The reason a dose is due now, or None."""
        t = self.therapy
        if self.not_before_h is None:
            self.not_before_h = time_h
        if self.doses_given >= t.max_doses or time_h + 1e-9 < self.not_before_h:
            return None
        if t.start_h is not None:
            next_h = max(t.start_h, self.not_before_h) + self.doses_given * (t.every_h or 0.0)
            if self.doses_given and t.every_h is None:
                return None
            return f"schedule: start_h={t.start_h:g}" + (f", every_h={t.every_h:g}" if t.every_h else "") if time_h + 1e-9 >= next_h else None
        if self.last_dose_h is not None and time_h - self.last_dose_h < max(t.min_interval_h, t.every_h or 0.0) - 1e-9:
            return None
        if readouts and self.trigger is not None and self.trigger.holds(readouts):
            return f"trigger: {self.trigger.text}"
        return None


def dose_mg(therapy: Therapy, drug: Drug, weight_kg: float) -> float:
    """The dose in mg: the config's override or the clinical default (weight-based doses capped)."""
    if therapy.dose_mg is not None:
        return therapy.dose_mg
    per_kg = therapy.dose_mg_kg if therapy.dose_mg_kg is not None else drug.dose_mg_kg
    if per_kg is None:
        return float(drug.dose_mg or 0.0)
    mg = per_kg * weight_kg
    return min(mg, drug.max_dose_mg) if drug.max_dose_mg and therapy.dose_mg_kg is None else mg


class Effects:
    """Current therapy effects; 1 means no effect, 0 a complete block."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.cart_signalling = 1.0  # dasatinib: CAR signalling free fraction
        self.tcell_proliferation = 1.0  # steroids
        self.cytokine_production = 1.0  # steroids
        self.myeloid_activation = 1.0  # steroids
        self.supply: dict[str, float] = {}  # depletion: marrow supply of a cell type's blood pool (1 = full; absent: 1)
        self.depletion_per_h: dict[str, float] = {}  # depletion: removal rate per cell type [1/h]
        self.fever_masked = False  # a drug that declares masks_fever is in the body (ASTCT: fever then not required)
        # free (unbound, unblocked) fraction of each cytokine's signalling, periphery and CNS
        self.free = {"periphery": dict.fromkeys(CATALOG.cytokines, 1.0), "cns": dict.fromkeys(CATALOG.cytokines, 1.0)}
        self.il6r_free = {"periphery": 1.0, "cns": 1.0}

    def checkpoint_state(self) -> dict[str, Any]:
        """Every multiplier (numbers and mappings of numbers; docs/state.md)."""
        return copy.deepcopy(vars(self))

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take the multipliers of :meth:`checkpoint_state`."""
        self._reset()
        unknown = set(state) - set(vars(self))
        if unknown:
            raise CheckpointError(f"saved therapy effects {sorted(unknown)} are not effects of this model")
        for name, value in copy.deepcopy(state).items():
            setattr(self, name, value)

    def update(self, plasma: dict[str, Plasma], bbb_integrity: float) -> None:
        """Recompute every multiplier from the drugs' plasma levels and the BBB."""
        self._reset()
        steroid = {"periphery": 0.0, "cns": 0.0}
        for pk in plasma.values():
            drug = pk.drug
            if pk.conc_ug_ml <= 0.0 and pk.depot_mg <= 0.0:
                continue
            if drug.mechanism.startswith("deplete:"):
                exposure = pk.conc_ug_ml / pk.peak_ug_ml if pk.peak_ug_ml else 0.0
                kind = drug.mechanism.split(":", 1)[1]
                rate = -math.log(1.0 - drug.depletion_fraction) / drug.depletion_h * exposure
                self.depletion_per_h[kind] = self.depletion_per_h.get(kind, 0.0) + rate
                self.supply[kind] = self.supply.get(kind, 1.0) * (1.0 - exposure)
                continue
            self.fever_masked |= drug.masks_fever
            levels = {"periphery": pk.conc_ug_ml, "cns": pk.cns_ug_ml(bbb_integrity)}
            for region, conc in levels.items():
                effect = occupancy(conc, drug)
                if drug.mechanism in NEUTRALISED:
                    self.free[region][NEUTRALISED[drug.mechanism]] *= 1.0 - effect
                if drug.mechanism == "IL6R":
                    self.il6r_free[region] *= 1.0 - effect
                if drug.mechanism == "steroid":
                    steroid[region] = rules.any_of(steroid[region], effect)
            if drug.mechanism == "CAR_signalling":
                self.cart_signalling *= 1.0 - occupancy(pk.conc_ug_ml, drug)
        s = steroid["periphery"]
        self.cytokine_production *= 1.0 - s
        self.tcell_proliferation *= 1.0 - s
        self.myeloid_activation *= 1.0 - s

    def signal_free_fraction(self, compartment: Any) -> dict[str, Any]:
        """Per cytokine, the signalling fraction at cells in ``compartment`` (labels array)."""
        in_cns = compartment == CNS
        out: dict[str, Any] = {}
        for name in CATALOG.cytokines:
            a, b = self.free["periphery"][name], self.free["cns"][name]
            out[name] = a if a == b else (in_cns * b + (~in_cns) * a)
        return out

    def signal_free_fraction_scalar(self, region: str) -> dict[str, float]:
        """Per cytokine, the signalling fraction in the blood/periphery (``region`` != 'cns') or CNS."""
        return dict(self.free["cns" if region == "cns" else "periphery"])

    def il6_receptor_free(self, compartment: Any) -> Any:
        """Fraction of IL-6 receptors free of tocilizumab at cells in ``compartment``."""
        a, b = self.il6r_free["periphery"], self.il6r_free["cns"]
        if a == b:
            return a
        in_cns = compartment == CNS
        return in_cns * b + (~in_cns) * a


@dataclass
class TherapyState:
    """Schedules, plasma levels and the log of administrations of a run."""

    config: Config
    schedules: list[Schedule] = field(default_factory=list)
    plasma: dict[str, Plasma] = field(default_factory=dict)
    events: list[tuple[float, str, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        weight = self.config.patient.weight_kg
        for therapy in self.config.therapies:
            trigger = parse_trigger(therapy.when) if therapy.when else None
            self.schedules.append(Schedule(therapy, trigger))
            drug = CATALOG.drugs[therapy.drug]
            self.plasma.setdefault(drug.name, Plasma(drug, drug.volume_l_per_kg * weight))

    def administer(self, time_h: float, readouts: dict[str, float], dt_h: float) -> list[tuple[float, str, float, str]]:
        """Give every dose that is due now; returns the new events (time_h, drug, dose_mg, reason)."""
        given = []
        for schedule in self.schedules:
            reason = schedule.due(time_h, readouts, dt_h)
            if reason is None:
                continue
            drug = CATALOG.drugs[schedule.therapy.drug]
            mg = dose_mg(schedule.therapy, drug, self.config.patient.weight_kg)
            self.plasma[drug.name].dose(mg)
            schedule.doses_given += 1
            schedule.last_dose_h = time_h
            given.append((time_h, drug.name, mg, reason))
        self.events.extend(given)
        return given

    # ------------------------------------------------------------------ checkpoints and branches
    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps: per schedule its therapy and progress, the drugs in the body, the log."""
        schedules = [{"therapy": s.therapy.model_dump(mode="json"), "doses_given": s.doses_given, "last_dose_h": s.last_dose_h,
                      "not_before_h": s.not_before_h} for s in self.schedules]  # fmt: skip
        plasma = {name: {"volume_l": pk.volume_l, "depot_mg": pk.depot_mg, "conc_ug_ml": pk.conc_ug_ml, "peak_ug_ml": pk.peak_ug_ml}
                  for name, pk in self.plasma.items()}  # fmt: skip
        return {"schedules": schedules, "plasma": plasma, "events": [list(e) for e in self.events]}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint under this state's config (the same, or a branch's).

        The schedules are this config's: one identical to a checkpointed schedule (same
        settings) keeps its dose count and last dose; any other is new and starts at the
        branch point (a ``start_h`` already past means the branch's first step; repeats
        follow ``every_h`` from there). Drugs already given stay in the body with their
        levels, whether or not the branch still schedules them; the log of past doses is kept.
        """
        saved = list(state.get("schedules", []))
        for schedule in self.schedules:
            mine = schedule.therapy.model_dump(mode="json")
            match = next((s for s in saved if s["therapy"] == mine), None)
            if match is None:
                schedule.doses_given, schedule.last_dose_h, schedule.not_before_h = 0, None, None
                continue
            saved.remove(match)
            schedule.doses_given = int(match["doses_given"])
            schedule.last_dose_h = None if match["last_dose_h"] is None else float(match["last_dose_h"])
            schedule.not_before_h = None if match["not_before_h"] is None else float(match["not_before_h"])
        for name, pk in state.get("plasma", {}).items():
            self.plasma[name] = Plasma(CATALOG.drugs[name], float(pk["volume_l"]), float(pk["depot_mg"]), float(pk["conc_ug_ml"]),
                                       float(pk["peak_ug_ml"]))  # fmt: skip
        self.events = [(float(t), str(drug), float(mg), str(reason)) for t, drug, mg, reason in state.get("events", [])]

    def advance_pk(self, dt_h: float) -> None:
        """Move every drug's plasma level on by one step."""
        for pk in self.plasma.values():
            pk.advance(dt_h)
