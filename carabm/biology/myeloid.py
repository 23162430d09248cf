"""What macrophages, monocytes and microglia share: activation by signals, secretion, IL-6 uptake.

Activation level ``a`` in [0, 1] follows ``da/dt = r_on X (1 - a) - r_off a``, so at steady
state ``a = X / (X + r_off/r_on)``: a graded response to the signal strength ``X`` with its
half-maximum at ``X = r_off/r_on``, and no ceiling below full activation. ``X = P (1 + g A) /
(1 + IL10/h10)``: the priming ``P`` is the sum of Hill responses to IFN-γ, GM-CSF and DAMPs
(each saturates as its receptors do) plus ``c`` per engaged CAR-T cell in the 26-voxel
neighbourhood (CD40L contact, graded in the number of contacts: a weighted neighbour count,
:func:`carabm.biology.cart.stimulus_weight`); the amplifiers IL-1β and TNF-α (``A``, a
probabilistic OR of Hill responses; not IL-6, which induces IL-1Ra instead) multiply it by up to ``1 + g``. Amplifiers alone do not
activate a resting cell, so the resting state is stable and the storm needs the CAR-T
trigger; IL-10 damps it. Secretion rises from a basal fraction to full with ``a``; IL-6
production largely needs IL-1 signalling (IL-1 induces IL-6, and partly TNF-α and IL-1β itself:
``il1_induced_share``), so IL-1 blockade lowers all three;
IL-10 comes late (after ``il10_delay_h`` of activation), closing the negative feedback loop.
The same rules, fed with serum levels instead of voxel levels, drive the circulating monocyte
pool (:mod:`carabm.biology.monocyte`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from carabm.biology import cart, rules
from carabm.biology.cytokines import sense
from carabm.io.config import CellSection, CytokineMap, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

STATES = ("resting", "activated")
RESTING, ACTIVATED = range(len(STATES))
#: per-agent variables of the myeloid cell types, and their units, long name and description
VARIABLES = {"activation": "float32", "active_h": "float32"}
VARIABLE_DOCS = {"activation": ("1", "activation level", "myeloid cells: activation level 0-1"),
                 "active_h": ("h", "time activated", "myeloid cells: hours activated without a break")}  # fmt: skip
ACTIVE_THRESHOLD = 0.5


class Myeloid(CellSection):
    """Macrophage-like activation: signals raise an activation level that drives secretion."""

    trigger_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IFNg=1000.0, GMCSF=500.0, DAMP=100.0),
        description="half-maximal concentration of each activating (priming) signal [pg/mL]; assumed: ng/mL range as for IFN-g and GM-CSF priming of macrophages in vitro",
    )
    amplifier_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL1b=200.0, TNFa=100.0),
        description="half-maximal concentration of each amplifying signal [pg/mL]; they raise activation only of primed cells; assumed. "
        "IL-1b and TNF-a only: IL-6 does not make myeloid cells produce IL-1 or TNF-a but IL-1Ra and soluble TNF receptors (IL-6 "
        "infusion in patients: IL-1b and TNF-a stayed undetectable, Tilg et al., Blood 1994; in healthy volunteers: no TNF-a, more "
        "IL-1Ra and IL-10, Steensberg et al., Am J Physiol Endocrinol Metab 2003)",
    )
    amplification_gain: float = Field(3.0, ge=0, description="fold rise of the priming signal at saturating amplifiers [1]; assumed")
    activation_hill: float = Field(2.0, gt=0, description="Hill power of every activating signal [1]; assumed (switch-like, a quiet resting state)")
    contact_signal_per_cell: float = Field(
        0.1, ge=0,
        description="priming signal per engaged CAR-T cell in contact (CD40L), added to the cytokine priming [1 per cell]; "
        "assumed: half-maximal activation (signal 0.5) at about 5 of the 26 neighbours engaged, so output keeps rising "
        "over the clinical range of contacts (a few per myeloid cell at the CAR-T peak) up to a full neighbourhood",
    )
    activation_per_h: float = Field(0.4, ge=0, description="rate of activation per unit of signal strength [1/h]; assumed (with the deactivation rate: half-maximal activation at signal 0.5)")
    deactivation_per_h: float = Field(0.2, ge=0, description="rate of return to rest [1/h]; assumed (about 3.5 h half-life)")
    il10_half_max_pg_ml: float = Field(300.0, gt=0, description="IL-10 halving activation [pg/mL]; assumed")
    il10_delay_h: float = Field(48.0, gt=0, description="time activated before half-maximal IL-10 secretion [h]; assumed")
    secretion_pg_cell_h: CytokineMap = Field(
        cytokine_map(IL6=4e-3, IL1b=3e-4, MCP1=1e-3, TNFa=2e-4, IL10=1e-3),
        description="secretion at full activation [pg/cell/h]; assumed: above the 1-10 ng/1e6 cells/day of LPS-stimulated "
        "myeloid cells in vitro, so that serum IL-6 reaches the 1e3-1e4 pg/mL of severe CRS once IL-1 induces it; IL-1b and "
        "TNF-a a tenth and a twentieth of IL-6, so that serum IL-1b and TNF-a stay at tens to about a hundred pg/mL "
        "(IL-1b acts mostly locally; serum IL-1b is low even in severe CRS)",
    )
    basal_fraction: float = Field(0.00005, ge=0, le=1, description="secretion at rest as a fraction of full [1]; assumed (gives baseline levels)")
    il1_induced_share: CytokineMap = Field(
        cytokine_map(IL6=0.9, TNFa=0.8, IL1b=0.5),
        description="share of each cytokine's production that needs IL-1 signalling at the cell (1 - s + s H(IL-1b_free)) [1]: "
        "IL-1 induces IL-6, TNF-a and its own synthesis in monocytes (Dinarello, Blood 1996); Norelli, Nat Med 2018: IL-1 precedes "
        "IL-6 and IL-1 blockade prevented both CRS and neurotoxicity although CAR-T cells still made their cytokines; the shares "
        "are assumed: IL-6 and TNF-a of the storm mostly IL-1-driven (the priming here is by IFN-g, GM-CSF, DAMPs and CD40L, "
        "not by bacterial products), IL-1b half made on priming alone",
    )
    il1_induction_half_max_pg_ml: float = Field(
        22.0, gt=0,
        description="IL-1b at the cell (free of drugs) giving half of the IL-1-dependent production [pg/mL]; assumed: IL-1b acts "
        "at pg/mL (a few bound receptors suffice), well above the resting ~1 pg/mL and below the tens to hundreds of pg/mL near "
        "activated myeloid cells in CRS, so the autocrine IL-1 loop runs in the storm and anakinra cuts it; a calibration choice "
        "within 15-30 pg/mL (tried: 30 left severe CRS at 1e11 tumour cells with IL-6 below 1e3 pg/mL, 15 left anakinra's worst "
        "ICANS grade unchanged)",
    )
    il1_induction_hill: float = Field(
        1.0, gt=0,
        description="Hill power of that IL-1 induction [1]: a receptor-occupancy response without cooperativity, since IL-1 acts "
        "with a few of a cell's receptors bound (Dinarello, Blood 1996); with the switch-like power 2 of the activating signals the "
        "induced share alone rose 4.8-fold between the 1e9- and 1e10-cell patients (serum IL-1b 5 and 30 pg/mL), the cliff of "
        "validation fact 8's first burden step; the power is assumed",
    )
    il6_uptake_per_h: float = Field(0.5, ge=0, description="IL-6 consumed by receptor uptake in the cell's voxel [1/h]; assumed")
    il1b_needs_inflammasome: float = Field(
        0.9, ge=0, le=1,
        description="share of IL-1b release that needs caspase-1 activation by a second signal, factors released by pyroptotic "
        "target cells (the DAMP field) [1]; Liu et al., Sci Immunol 2020: CAR-T-induced target-cell pyroptosis activates caspase-1 "
        "in macrophages, and caspase-1 inhibition eliminated CRS in mice; the share is assumed (pro-IL-1b is made on priming, "
        "its release needs the inflammasome)",
    )
    inflammasome_damp_half_max_pg_ml: float = Field(
        100.0, gt=0, description="DAMP level for half-maximal caspase-1 activation [pg/mL]; assumed equal to the DAMP priming half-maximum"
    )



@dataclass(frozen=True)
class Inputs:
    """What the myeloid rules sense, per agent ``[n]``: cytokine levels at its voxel, its
    compartment's free signalling fractions, and CD40L contacts (the summed stimulus weight of
    engaged CAR-T neighbours, ``float32``).

    The same for every myeloid kind within a decide layer (fields, positions and CAR-T cells
    do not change between the myeloid rules), so :meth:`CrsModel.step` gathers them once.
    """

    local: dict[str, Any]
    block: dict[str, Any]
    contacts: Any


def inputs(model: CrsModel) -> Inputs:
    """:class:`Inputs` for all agents, gathered once per step at the first myeloid rule (after the CAR-T rules)."""
    return model.once_per_step("myeloid:inputs", _gather)


def _gather(model: CrsModel) -> Inputs:
    return Inputs(
        sense(model.fields_flat, model.voxels()),
        model.effects.signal_free_fraction(model.compartments()),
        model.neighbour_sum(cart.stimulus_weight(model)),
    )


def signal_strength(local: Mapping[str, Any], block: Mapping[str, Any], contacts: Any, params: Myeloid, suppression: Any = 1.0) -> Any:
    """The signal strength ``X`` (>= 0, no upper bound) of cells that see cytokine levels ``local`` [pg/mL].

    ``block``: the free (signalling) fraction of each cytokine; ``contacts``: the summed stimulus
    weight of engaged CAR-T cells in contact (0 in the blood pool); ``suppression``: therapy
    multiplier (steroids). Works on arrays of any backend and on host scalars alike.
    """
    power = params.activation_hill
    priming = params.contact_signal_per_cell * contacts
    for name, h in params.trigger_half_max_pg_ml.as_dict().items():
        priming = priming + rules.hill(local[name] * block[name], h, power)
    amplifier = rules.any_of(*[rules.hill(local[name] * block[name], h, power) for name, h in params.amplifier_half_max_pg_ml.as_dict().items()])
    return priming * (1.0 + params.amplification_gain * amplifier) * rules.inhibition(local["IL10"], params.il10_half_max_pg_ml) * suppression


def next_level(level: Any, signal: Any, params: Myeloid, dt_h: float) -> Any:
    """Activation level after one step of ``dt_h`` at signal strength ``signal`` (exact, bounded in [0, 1])."""
    return rules.relax(level, params.activation_per_h * signal, params.deactivation_per_h, dt_h)


def next_active_h(level: Any, active_h: Any, dt_h: float, xp: Any) -> Any:
    """Hours activated without a break: counts while above the threshold, resets once the level falls below 0.2."""
    return xp.where(level > ACTIVE_THRESHOLD, active_h + dt_h, xp.where(level < 0.2, 0.0, active_h))


def secretion_rates(level: Any, active_h: Any, il1_signal: Any, params: Myeloid, production: Any = 1.0, damp: Any = 0.0) -> dict[str, Any]:
    """Secretion per cell [pg/cell/h] of each cytokine at activation ``level`` (IL-10 late, IL-6, TNF-α and IL-1β partly induced by IL-1,
    IL-1β released by the inflammasome, whose second signal is the DAMP level ``damp`` [pg/mL] the cell sees)."""
    drive = (params.basal_fraction + (1.0 - params.basal_fraction) * level) * production
    late = rules.hill(active_h, params.il10_delay_h)
    induced = params.il1_induced_share.as_dict()
    s = params.il1b_needs_inflammasome
    il1b_release = (1.0 - s) + s * rules.hill(damp, params.inflammasome_damp_half_max_pg_ml, params.activation_hill)
    out = {}
    for name, rate in params.secretion_pg_cell_h.as_dict().items():
        factor = late if name == "IL10" else il1b_release if name == "IL1b" else 1.0
        if name in induced:
            factor = factor * ((1.0 - induced[name]) + induced[name] * il1_signal)
        out[name] = rate * drive * factor
    return out


def secretion_multiplier(model: CrsModel) -> float:
    """Secretion multiplier of the patient's myeloid cells: the trait ``patient.myeloid_cytokine_capacity`` times the therapies' (steroids)."""
    return model.config.patient.myeloid_cytokine_capacity * model.effects.cytokine_production


def il1_induction_signal(il1b_pg_ml: Any, params: Myeloid) -> Any:
    """IL-1 signalling that induces IL-6, TNF-α and IL-1β (0..1), from the free IL-1β level [pg/mL]."""
    return rules.hill(il1b_pg_ml, params.il1_induction_half_max_pg_ml, params.il1_induction_hill)


def activate(model: CrsModel, cells: Any, params: Myeloid) -> None:
    """Update the activation level of the agents where ``cells`` (bool ``[n]``, one myeloid kind) is set.

    On the host the rules run on those agents' slots only (:meth:`CrsModel.slots_of`), on a GPU
    on all agents, masked; the numbers are the same.
    """
    xp, store = model.xp, model.store
    at = model.slots_of(cells)
    sensed = inputs(model) if at is None else _gather_at(model, at)
    signal = signal_strength(sensed.local, sensed.block, sensed.contacts, params, model.effects.myeloid_activation)
    level = next_level(_take(store["activation"], at), signal, params, model.dt_h)
    active = level > ACTIVE_THRESHOLD
    active_h = next_active_h(level, _take(store["active_h"], at), model.dt_h, xp)
    _put(xp, store["activation"], at, cells, level)
    _put(xp, store["active_h"], at, cells, active_h)
    _put(xp, store.state, at, cells, xp.where(active, ACTIVATED, RESTING))


def _take(values: Any, at: Any) -> Any:
    """``values`` at the slots ``at`` (all of them when ``at`` is None)."""
    return values if at is None else values[at]


def _put(xp: Any, column: Any, at: Any, cells: Any, values: Any) -> None:
    """Write ``values`` into ``column`` at the slots ``at``, or where ``cells`` is set when ``at`` is None."""
    values = values.astype(column.dtype)
    if at is None:
        column[...] = xp.where(cells, values, column)
    else:
        column[at] = values


def _gather_at(model: CrsModel, at: Any) -> Inputs:
    """:class:`Inputs` of the agents at slots ``at`` (the contacts summed once per step for all)."""
    voxels = model.voxels()[at]
    contacts = model.once_per_step("myeloid:contacts", lambda m: m.neighbour_sum(cart.stimulus_weight(m)))
    return Inputs(sense(model.fields_flat, voxels), model.effects.signal_free_fraction(model.labels[voxels]), contacts[at])


def secrete(model: CrsModel, cells: Any, params: Myeloid) -> None:
    """Secretion scaled by activation (IL-10 late), and IL-6 consumption by IL-6 receptors, of the agents where ``cells`` is set."""
    xp, store = model.xp, model.store
    at = model.slots_of(cells)
    voxels = _take(model.voxels(), at)
    compartments = model.labels[voxels]
    il1_free = model.effects.signal_free_fraction(compartments)["IL1b"]
    il1_signal = il1_induction_signal(model.fields_flat[model.index["IL1b"], voxels] * il1_free, params)
    damp = model.fields_flat[model.index["DAMP"], voxels]
    rates = secretion_rates(_take(store["activation"], at), _take(store["active_h"], at), il1_signal, params, secretion_multiplier(model), damp)
    for name, rate in rates.items():
        model.secretion.add_each(name, voxels, rate if at is not None else xp.where(cells, rate, 0.0))
    free_receptors = model.effects.il6_receptor_free(compartments)
    everyone = cells if at is None else xp.ones(at.shape, dtype=bool)
    model.secretion.consume("IL6", voxels, everyone, params.il6_uptake_per_h * free_receptors)
