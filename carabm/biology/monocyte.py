"""Monocytes: circulate, are recruited by MCP-1 and GM-CSF into tissue (and through a leaky
BBB into the CNS), are the main IL-1/IL-6 producers (Norelli 2018), and become macrophages
over days.

The circulating pool is kept at the patient's baseline by marrow output: pool cells leave
the blood with the circulating half-life and are replaced at the same rate; serum GM-CSF
raises that baseline (emergency myelopoiesis), so GM-CSF blockade (lenzilumab) lowers the
myeloid supply of the storm (Sterner, Blood 2019).

The circulating pool also responds as a whole (a systemic myeloid response): its mean
activation level follows the shared myeloid rules fed with the free serum levels (IFN-γ,
GM-CSF, DAMP priming; IL-1β, TNF-α amplifying; IL-10 damping; no contact), one host
scalar ODE (:class:`PoolActivation`), and the pool's monocytes secrete into serum at the
per-cell rates of lattice monocytes: circulating monocytes are a main IL-1/IL-6 source
(Norelli, Nat Med 2018). Depletion and steroids act on it as on the lattice's monocytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from carabm.biology import macrophage, myeloid, rules
from carabm.biology.cytokines import SECONDS_PER_HOUR
from carabm.biology.myeloid import Myeloid
from carabm.engine.agents import KindSpec
from carabm.engine.lattice import BLOOD
from carabm.engine.rng import stochastic_round
from carabm.io.catalog import CellType
from carabm.io.config import CytokineMap, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "monocyte"
#: the model part (``model.parts``) holding the circulating pool's activation
POOL_PART = "monocyte_pool"


class Monocyte(Myeloid):
    """Circulating monocytes: recruited by MCP-1, main IL-1/IL-6 source, become macrophages."""

    initial_count: int = Field(40, ge=0, description="monocytes in lattice tissue at t = 0 [cells] (blood: patient.monocytes_per_ul); used only when per_tumour_cell is null")
    per_tumour_cell: float | None = Field(
        0.02, ge=0, le=100,
        description="monocytes in lattice tissue at t = 0 per tumour B cell [cells/cell] (null: initial_count); assumed: a tenth of the macrophages (monocytes turn into macrophages within days)",
    )  # fmt: skip
    speed_um_min: float = Field(5.0, ge=0, description="monocyte crawling speed [um/min]; assumed")
    secretion_pg_cell_h: CytokineMap = Field(
        cytokine_map(IL6=1.5e-2, IL1b=1.5e-3, TNFa=4e-4, IL10=5e-4),
        description="secretion at full activation [pg/cell/h]; assumed 4-5x macrophages for IL-6/IL-1 (Norelli, Nat Med 2018: monocytes are the main source); no MCP-1, so recruited cells do not attract each other",
    )
    recruitment_per_h: float = Field(0.3, ge=0, description="baseline extravasation rate at the vessel wall [1/h]; assumed")
    mcp1_recruitment_gain: float = Field(20.0, ge=0, description="fold rise of extravasation at saturating MCP-1; assumed")
    mcp1_half_max_pg_ml: float = Field(50.0, gt=0, description="MCP-1 for half the rise [pg/mL]; assumed")
    trigger_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IFNg=1000.0, GMCSF=100.0, DAMP=100.0),
        description="half-maximal priming concentration [pg/mL]; assumed: monocytes respond to GM-CSF at lower levels than macrophages",
    )
    gmcsf_recruitment_gain: float = Field(5.0, ge=0, description="fold rise of extravasation at saturating GM-CSF [1]; assumed (GM-CSF drives myeloid recruitment; Sterner, Blood 2019)")
    gmcsf_half_max_pg_ml: float = Field(20.0, gt=0, description="GM-CSF for half that rise and half the emergency marrow output [pg/mL]; assumed")
    gmcsf_marrow_gain: float = Field(2.0, ge=0, description="fold rise of the circulating monocyte baseline at saturating serum GM-CSF [1]; assumed (emergency myelopoiesis)")
    chemotaxis_sensitivity: float = Field(0.01, ge=0, description="bias up the MCP-1 gradient [1/(pg/mL)]; assumed")
    differentiation_h: float = Field(72.0, gt=0, description="mean time in tissue before becoming a macrophage [h]; assumed (days)")
    blood_half_life_h: float = Field(24.0, gt=0, description="circulating half-life; marrow output keeps the baseline [h]; assumed (about 1 day)")
    marrow_release_gain: float = Field(
        20.0, ge=0,
        description="fold rise of the marrow's replacement of a monocyte deficit in blood at saturating serum MCP-1 [1]: monocytes leave the "
                    "marrow through CCR2, the MCP-1 receptor (Serbina and Pamer, Nat Immunol 2006; Tsou et al., J Clin Invest 2007), so "
                    "inflammation refills blood that tissue recruitment drains; half-maximal at mcp1_half_max_pg_ml; 20 refills a deficit "
                    "with a time constant of about 1.6 h at saturating MCP-1 (95 % in about 5 h), as blood monocytes recovered within "
                    "3-6 h after the profound monocytopenia of human endotoxaemia, by early release of classical monocytes from the "
                    "marrow (Patel et al., J Exp Med 2017; Tak et al., J Innate Immun 2017)",
    )  # fmt: skip
    pool_sensitivity_sd: float = Field(
        2.0, ge=0, le=3,
        description="spread of the circulating monocytes' sensitivity to cytokines: standard deviation of its natural log [1]; the pool is "
                    "followed as eight classes of equal size at the quantiles of this log-normal spread, each with its own activation "
                    "level (a class of sensitivity m activates as if the cytokines were m times their level); 0: one level for the whole "
                    "pool. Single cells switch on all or nothing, at thresholds that differ from cell to cell, so the share of cells "
                    "that respond rises with the dose over orders of magnitude (NF-kB in single cells under TNF-a doses over four "
                    "decades, fewer cells responding at lower doses: Tay et al., Nature 2010; thresholds that vary across the "
                    "population: Zhang et al., Cell Syst 2017); the value is assumed: 95 % of cells within about 3.5 decades",
    )  # fmt: skip


def kind_spec(p: Monocyte, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: circulates, recruited at the vessel wall, follows MCP-1 up its gradient, crosses the BBB."""
    return KindSpec(NAME, p.speed_um_min, ("tissue", "blood", "cns"), chemotaxis_field=field_index["MCP1"],
                    chemotaxis_sensitivity=p.chemotaxis_sensitivity, extravasation_per_h=p.recruitment_per_h,
                    bbb_crossing=True, variables=myeloid.VARIABLES)  # fmt: skip


def recruitment_scale(model: CrsModel) -> Any:
    """Per-agent multiplier on extravasation ``float32 [n]``: MCP-1 at the vessel wall raises recruitment."""
    p = model.config.cells.monocyte
    xp = model.xp
    voxels = model.voxels()
    mcp1 = model.fields_flat[model.index["MCP1"], voxels]
    gmcsf = model.fields_flat[model.index["GMCSF"], voxels] * model.effects.free["periphery"]["GMCSF"]
    gain = (1.0 + p.mcp1_recruitment_gain * rules.hill(mcp1, p.mcp1_half_max_pg_ml)) * (
        1.0 + p.gmcsf_recruitment_gain * rules.hill(gmcsf, p.gmcsf_half_max_pg_ml)
    )
    return xp.where(model.mask_of(NAME), gain.astype(xp.float32), xp.float32(1.0))


def step(model: CrsModel) -> None:
    """Activation and differentiation into macrophages of monocytes that left the blood."""
    p = model.config.cells.monocyte
    xp, store = model.xp, model.store
    cells = model.mask_of(NAME)
    myeloid.activate(model, cells, p)
    outside_blood = model.compartments() != BLOOD
    p_diff = rules.probability(1.0 / p.differentiation_h, model.dt_h)
    becomes = cells & outside_blood & (model.uniform_all("monocyte:differentiate") < p_diff)
    store.kind[...] = xp.where(becomes, store.kind_id(macrophage.NAME), store.kind).astype(store.kind.dtype)


def secrete(model: CrsModel) -> None:
    """Secretion and IL-6 uptake of monocytes."""
    myeloid.secrete(model, model.mask_of(NAME), model.config.cells.monocyte)


def renew_pool(model: CrsModel) -> None:
    """Marrow output and blood exit keep the circulating pool at the patient's baseline."""
    p = model.config.cells.monocyte
    pool = model.circulation.pool
    k = model.store.kind_id(NAME)
    rate = rules.rate_per_h_from_half_life(p.blood_half_life_h)
    current = int(pool[k].sum())
    gmcsf = float(model.serum[model.index["GMCSF"]]) * model.effects.free["periphery"]["GMCSF"]
    target = baseline(model) * (1.0 + p.gmcsf_marrow_gain * rules.hill(gmcsf, p.gmcsf_half_max_pg_ml))
    if target > current:  # MCP-1 speeds up the marrow's release (CCR2), not the cells' exit from blood
        rate = rate * (1.0 + p.marrow_release_gain * rules.hill(float(model.serum[model.index["MCP1"]]), p.mcp1_half_max_pg_ml))
    fraction = rules.probability(rate, model.dt_h)
    change = (target - current) * fraction * model.effects.supply.get(NAME, 1.0)
    whole = stochastic_round(change, model.uniform_scalar("monocyte:pool"))
    if whole >= 0:
        pool[k, myeloid.RESTING] += whole
    else:
        pool[k, myeloid.RESTING] = max(0, pool[k, myeloid.RESTING] + whole)


#: the circulating pool is followed as this many sensitivity classes of equal size
SENSITIVITY_CLASSES = 8


def sensitivities(sd: float) -> np.ndarray:
    """The classes' sensitivity multipliers: the log-normal's quantiles at ``(k + 1/2) / K`` (median 1; all 1 at ``sd`` 0)."""
    quantiles = [NormalDist().inv_cdf((k + 0.5) / SENSITIVITY_CLASSES) for k in range(SENSITIVITY_CLASSES)]
    return np.exp(sd * np.asarray(quantiles))


class PoolActivation:
    """Activation levels of the circulating monocyte pool's sensitivity classes and their hours activated (host arrays, checkpointed)."""

    def __init__(self, cytokines: tuple[str, ...] = (), sensitivity_sd: float = 0.0) -> None:
        #: the classes' sensitivity multipliers (from the config, not state)
        self.sensitivity = sensitivities(sensitivity_sd)
        self.level = np.zeros(SENSITIVITY_CLASSES)
        self.active_h = np.zeros(SENSITIVITY_CLASSES)
        #: the pool's secretion into serum over the last step [pg/mL/h per cytokine] (0 before
        #: the first step; a readout, not state: recomputed every step, so not checkpointed)
        self.secretion_pg_ml_h = dict.fromkeys(cytokines, 0.0)

    @property
    def mean_level(self) -> float:
        """The pool's mean activation level (classes of equal size)."""
        return float(np.mean(self.level))

    def checkpoint_state(self) -> dict[str, Any]:
        """The classes' activation levels and hours activated."""
        return {"level": [float(x) for x in self.level], "active_h": [float(x) for x in self.active_h]}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take the state of :meth:`checkpoint_state` (a checkpoint from before the classes holds one number each: every class gets it)."""
        self.level = np.broadcast_to(np.asarray(state["level"], dtype=float), (SENSITIVITY_CLASSES,)).copy()
        self.active_h = np.broadcast_to(np.asarray(state["active_h"], dtype=float), (SENSITIVITY_CLASSES,)).copy()


def pool_response(model: CrsModel) -> None:
    """Activation of the circulating pool by serum cytokines, and its secretion into serum (a systemic source)."""
    p = model.config.cells.monocyte
    state: PoolActivation = model.parts[POOL_PART]
    serum = model.serum
    free = model.effects.signal_free_fraction_scalar("blood")
    levels = {name: float(serum[i]) for name, i in model.index.items()}
    # a class of sensitivity m activates as if every cytokine were m times its level (its threshold is m times lower);
    # what an activated cell then makes (IL-1 induction, inflammasome) does not depend on its class
    perceived = {name: level * state.sensitivity for name, level in levels.items()}
    signal = myeloid.signal_strength(perceived, free, 0.0, p, model.effects.myeloid_activation)
    state.level = myeloid.next_level(state.level, signal, p, model.dt_h)
    state.active_h = myeloid.next_active_h(state.level, state.active_h, model.dt_h, np)
    il1_signal = myeloid.il1_induction_signal(levels["IL1b"] * free["IL1b"], p)
    rates = myeloid.secretion_rates(state.level, state.active_h, il1_signal, p, myeloid.secretion_multiplier(model), levels["DAMP"])
    cells = int(model.circulation.pool[model.store.kind_id(NAME)].sum())
    per_ml_s = cells / (model.blood.pool_volume_ml * SECONDS_PER_HOUR)
    sources = np.zeros(len(model.index))
    for name, rate in rates.items():  # the classes are of equal size: the pool secretes their mean rate
        sources[model.index[name]] = float(np.mean(rate)) * per_ml_s * getattr(model.config.cytokines, name).secretion_scale
        state.secretion_pg_ml_h[name] = float(sources[model.index[name]]) * SECONDS_PER_HOUR  # the readout
    model.blood.set_systemic_source(POOL_PART, sources)


def blood_pool(model: CrsModel) -> None:
    """The systemic pool: marrow renewal, then the pool's response to serum cytokines."""
    renew_pool(model)
    pool_response(model)


def baseline(model: CrsModel) -> float:
    """The patient's circulating monocytes, scaled to the lattice's blood pool [cells]."""
    patient = model.config.patient
    return patient.monocytes_per_ul * patient.blood_volume_ml * 1000.0 * model.scale


def fill_pool(model: CrsModel) -> None:
    """At t = 0 the systemic pool holds the patient's baseline monocytes, resting."""
    model.circulation.pool[model.store.kind_id(NAME), myeloid.RESTING] += int(round(baseline(model)))
    p = model.config.cells.monocyte
    model.parts[POOL_PART] = PoolActivation(tuple(p.secretion_pg_cell_h.as_dict()), p.pool_sensitivity_sd)


#: the catalog entry (registered by carabm.biology, whose order sets the HDF5 type codes)
CELL_TYPE = CellType(
    NAME, "monocytes", home="tissue", states=myeloid.STATES, activated="activated", section=Monocyte, spec=kind_spec,
    colour=(1.00, 0.50, 0.00),  # orange
    variables=myeloid.VARIABLES, variable_docs=myeloid.VARIABLE_DOCS, layers={"decide": step, "blood_pool": blood_pool, "secrete": secrete},
    setup=fill_pool, extravasation_scale=recruitment_scale,
)  # fmt: skip
