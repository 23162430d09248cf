"""CAR-T cells: contact with CD19+ B cells activates them; they kill serially, divide while
stimulated, secrete IFN-γ, GM-CSF, TNF-α and IL-2, then exhaust and contract.

States: RESTING (infused, not yet stimulated), ACTIVATED, EXHAUSTED. ``stimulation_h``
counts down from ``stimulation_memory_h`` after each antigen contact; proliferation and
secretion need it above zero (a cell re-entering from the blood pool starts at zero).
A resting cell that activates first leaves G0 and completes its first cell cycle
(``lag_h`` counts down from ``first_division_h``) before it can divide; its daughters,
already cycling, divide every ``doubling_time_h`` while stimulated.

Super-individuals (Scheffer et al., Ecol Model 1995): an agent stands for ``weight`` cells
(lattice-scale units). Infusion makes at least ``min_agents`` agents, of weight below 1 when
the lattice's share of the dose is smaller; a division doubles the weight while it is below
1 and splits the agent (two agents of the same weight) once it is whole, so agent numbers
stay about ``max(min_agents, cells)``. Kills, secretion and the CD40L contact signal scale
with the weight in expectation; ``kills`` counts kills per cell (each kill of an agent adds
``1/weight``, stochastically rounded), so exhaustion does not depend on the weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from carabm.biology import bcell, rules
from carabm.engine.agents import WEIGHT, KindSpec
from carabm.engine.rng import stochastic_round
from carabm.io.catalog import CellType
from carabm.io.config import CellSection, CytokineMap, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "cart"
STATES = ("resting", "activated", "exhausted")
RESTING, ACTIVATED, EXHAUSTED = range(len(STATES))
#: T cells leave tissue through lymph slowly (assumed 2 %/h)
INTRAVASATION_PER_H = 0.02
#: what decides a cell's exhaustion survives its passages through the blood (pool means, see BloodCirculation)
CARRIED = ("kills", "divisions")
#: per-agent variables, and their units, long name and description
VARIABLES = {"kills": "int32", "divisions": "int32", "stimulation_h": "float32", "lag_h": "float32", WEIGHT: "float32"}
VARIABLE_DOCS = {
    "kills": ("1", "kills", "CAR-T: B cells each cell of this agent has killed (expected per cell, stochastically rounded)"),
    WEIGHT: ("1", "weight", "CAR-T: cells this agent stands for (super-individual; 1 when the dose gives enough agents)"),
    "divisions": ("1", "divisions", "CAR-T: divisions counted along this cell's lineage"),
    "stimulation_h": ("h", "stimulation time", "CAR-T: hours of antigen-stimulation memory left (counts down after each contact)"),
    "lag_h": ("h", "time to first division", "CAR-T: hours left before a newly activated cell can first divide (0: cycling or resting)"),
}


class CarT(CellSection):
    """CAR-T cells: infused into the blood at t = 0, home to tissue, kill CD19+ B cells, expand, contract."""

    dose: float = Field(1.4e8, ge=0, description="CAR-T cells infused at t = 0 [cells]; axi-cel label dose 2e6/kg x 70 kg")
    min_agents: int = Field(
        800, ge=1, le=100000,
        description="fewest CAR-T agents infused [agents]: a smaller share of the dose is carried by this many agents of weight below 1 "
                    "(super-individuals, Scheffer et al., Ecol Model 1995); measured (docs/model.md, convergence): 100 agents overstate "
                    "the expansion by 8-10 % and peak IL-6 by ~15 %, 800 agree with a lattice 8x larger, for 5-10 % more run time "
                    "(agents grow to weight 1 before they split, so the extra agents last only until then)",
    )  # fmt: skip
    speed_um_min: float = Field(18.0, ge=0, description="T-cell speed [um/min]; Textor et al., PNAS 2011 (lymph node)")
    homing_per_h: float = Field(
        6.0, ge=0, description="extravasation rate from blood at the vessel wall [1/h]; assumed: most infused cells home within 2 days"
    )
    activation_per_h: float = Field(4.0, ge=0, description="activation rate on contact with a CD19+ B cell [1/h]; assumed (minutes to hours)")
    kill_rate_per_h: float = Field(
        0.12, ge=0, description="lysis rate of a contacted target by an activated cell [1/h]; assumed (serial killing, one target per ~8 h of contact)"
    )
    max_kills: int = Field(25, ge=1, description="kills before exhaustion [targets]; assumed (serial-killing capacity)")
    first_division_h: float = Field(
        26.0, ge=0, description="time from activation to the first division [h]; Mishima et al., Cell Mol Biol Lett 2014: stimulated T cells "
        "leave G0 about 10 h after stimulation and complete a first cell cycle of about 16 h (later cycles are shorter); human PHA-stimulated "
        "lymphocytes enter S phase 24-48 h after stimulation",
    )
    doubling_time_h: float = Field(12.0, gt=0, description="division time when stimulated, after the first division [h]; assumed (activated T cells divide every 8-24 h)")
    max_divisions: int = Field(10, ge=0, description="divisions before exhaustion; assumed (2^10 = 1024-fold per clone, within 1e2-1e5-fold)")
    divisions_per_kill: float = Field(
        0.0, ge=0, description="divisions added to a cell's programme by each target it kills [1/kill]: continued antigen extends the "
        "division programme (Obst et al., J Exp Med 2005) and stimuli add up to a division destiny (Marchingo et al., Science 2014), "
        "so a larger tumour makes a larger expansion; 0 (off) by default: at 0.1 the dose series of validation fact 8 is smooth but "
        "anakinra no longer lowers the worst ICANS grade (fact 5; docs/model.md, section 7)",
    )  # fmt: skip
    stimulation_memory_h: float = Field(36.0, gt=0, description="proliferation/secretion continue this long after the last antigen contact [h]; assumed")
    death_resting_per_day: float = Field(0.02, ge=0, description="death rate of resting CAR-T cells [1/day]; assumed")
    death_contraction_per_day: float = Field(0.35, ge=0, description="death rate of activated cells after antigen loss (contraction) [1/day]; assumed")
    death_exhausted_per_day: float = Field(0.6, ge=0, description="death rate of exhausted cells [1/day]; assumed")
    secretion_pg_cell_h: CytokineMap = Field(
        cytokine_map(IFNg=2e-3, GMCSF=1e-3, TNFa=5e-4, IL2=1e-3),
        description="secretion of an activated, stimulated CAR-T cell [pg/cell/h]; assumed: ng/mL per 1e5 cells per day in co-culture",
    )


def kind_spec(p: CarT, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: walks in tissue, blood and CNS, homes from blood, crosses the BBB."""
    return KindSpec(NAME, p.speed_um_min, ("tissue", "blood", "cns"), extravasation_per_h=p.homing_per_h,
                    intravasation_per_h=INTRAVASATION_PER_H, bbb_crossing=True, variables=VARIABLES)  # fmt: skip


def step(model: CrsModel) -> None:
    """Activation, serial killing, proliferation, exhaustion and death of every CAR-T cell.

    Every rule is computed for all agents and applied where ``cells`` (the CAR-T mask) is set.
    """
    p = model.config.cells.cart
    xp, store, effects = model.xp, model.store, model.effects
    cells = model.mask_of(NAME)
    state = store.state
    target_slot, has_target = model.random_neighbour_of_kind(bcell.NAME, "cart:target", agents=cells)
    has_target = bcell.recognised(model, target_slot, has_target)  # antigen escape: only contacts the CAR recognises count
    signalling = effects.cart_signalling  # dasatinib blocks CAR signalling (1 = free)

    # activation on contact with a CD19+ B cell; the first cell cycle starts (no division before it ends)
    activate = cells & has_target & (state == RESTING) & (model.uniform_all("cart:activate") < rules.probability(p.activation_per_h * signalling, model.dt_h))
    state = xp.where(activate, ACTIVATED, state)
    lag = xp.where(activate, xp.float32(p.first_division_h), xp.maximum(store["lag_h"] - xp.float32(model.dt_h), xp.float32(0.0)))
    store["lag_h"][...] = xp.where(cells, lag.astype(xp.float32), store["lag_h"])

    # antigen contact keeps an activated cell stimulated; killing is serial, in proportion to the cells an agent stands for
    engaged = cells & has_target & (state == ACTIVATED)
    weight = store[WEIGHT]
    stimulation = store["stimulation_h"]
    stimulation = xp.where(engaged & (signalling > 0.5), p.stimulation_memory_h, xp.maximum(stimulation - model.dt_h, 0.0))
    p_kill = rules.probability(p.kill_rate_per_h * signalling, model.dt_h) * weight
    kill = engaged & (model.uniform_all("cart:kill") < p_kill)
    per_cell = stochastic_round(1.0 / xp.maximum(weight, xp.float32(1e-30)), model.uniform_all("cart:kills_per_cell"))
    kills = store["kills"] + xp.where(kill, per_cell, 0).astype(xp.int32)
    store["kills"][...] = kills
    store["stimulation_h"][...] = xp.where(cells, stimulation.astype(xp.float32), store["stimulation_h"])

    # exhaustion after many kills or divisions
    divisions = store["divisions"]
    exhausted = cells & (state == ACTIVATED) & ((kills >= p.max_kills) | (divisions >= bcell.cart_division_limit(model, kills)))
    state = xp.where(exhausted, EXHAUSTED, state)
    store.state[...] = xp.where(cells, state.astype(store.state.dtype), store.state)
    model.tally("cart_kills", kill)

    # death: contraction after antigen loss, faster when exhausted
    rate_per_day = xp.where(
        state == EXHAUSTED,
        p.death_exhausted_per_day,
        xp.where((state == ACTIVATED) & (stimulation <= 0), p.death_contraction_per_day, p.death_resting_per_day),
    )
    dies = cells & (model.uniform_all("cart:death") < rules.probability(rate_per_day / 24.0, model.dt_h))

    # proliferation while stimulated (steroids slow it)
    rate_div = rules.rate_per_h_from_half_life(p.doubling_time_h) * effects.tcell_proliferation
    cycling = (state == ACTIVATED) & (stimulation > 0) & (lag <= 0)
    divides = cells & cycling & ~dies & (model.uniform_all("cart:divide") < rules.probability(rate_div, model.dt_h))

    model.mark_dead(dies)
    bcell.lyse(model, targeted(model, target_slot, kill))
    divide(model, divides)


def divide(model: CrsModel, divides: Any) -> None:
    """Division of the agents where ``divides`` is set: a fractional agent doubles its weight, a whole one splits in two."""
    store, xp = model.store, model.xp
    weight = store[WEIGHT]
    doubles = divides & (weight < 1.0)
    store[WEIGHT][...] = xp.where(doubles, weight * xp.float32(2.0), weight)
    store["divisions"][...] += doubles.astype(xp.int32)
    parents, daughters = model.movement.divide(divides & ~doubles, model.step_index, "cart:daughter")
    store["divisions"][parents] += 1  # no-ops when nobody divided
    store["divisions"][daughters] += 1


def targeted(model: CrsModel, target_slot: Any, hit: Any) -> Any:
    """Bool ``[n]``: the agents that some agent with ``hit`` set has as its ``target_slot`` (a scatter, no host read)."""
    xp, n = model.xp, model.store.n
    flag = xp.zeros(n + 1, dtype=bool)  # slot n: where the agents without a hit write
    flag[xp.where(hit, target_slot, n)] = True
    return flag[:n]


def secrete(model: CrsModel) -> None:
    """Activated, stimulated CAR-T cells secrete IFN-γ, GM-CSF, TNF-α and IL-2."""
    store, xp = model.store, model.xp
    active = model.mask_of(NAME) & (store.state == ACTIVATED) & (store["stimulation_h"] > 0)
    cells = xp.where(active, store[WEIGHT], xp.float32(0.0))  # the cells each agent stands for
    voxels = model.voxels()
    for name, rate in model.config.cells.cart.secretion_pg_cell_h.as_dict().items():
        model.secretion.add_each(name, voxels, cells * (rate * model.effects.cytokine_production))


def pool_step(model: CrsModel) -> None:
    """Death of circulating CAR-T cells in the systemic pool (resting, contracting, exhausted)."""
    p = model.config.cells.cart
    pool = model.circulation.pool
    k = model.store.kind_id(NAME)
    rates = {RESTING: p.death_resting_per_day, ACTIVATED: p.death_contraction_per_day, EXHAUSTED: p.death_exhausted_per_day}
    for state, per_day in rates.items():
        expected = pool[k, state] * rules.probability(per_day / 24.0, model.dt_h)
        whole = stochastic_round(expected, model.uniform_scalar(f"cart:pool_death:{state}"))
        pool[k, state] = max(0, pool[k, state] - whole)


def engaged(model: CrsModel) -> Any:
    """Per agent: an activated CAR-T cell still stimulated by antigen (expresses CD40L), as a contact partner.

    An agent of weight below 1 is present as a partner with probability ``weight`` (drawn
    each step), so the contact signal it gives scales with the cells it stands for.
    """
    store = model.store
    on = (store.kind == store.kind_id(NAME)) & (store.state == ACTIVATED) & (store["stimulation_h"] > 0)
    return on & (model.uniform_all("cart:partner") < store[WEIGHT])


def stimulus_weight(model: CrsModel) -> Any:
    """Per agent ``float32 [n]``: the cells of an engaged CAR-T agent (its weight), 0 for every other agent."""
    store, xp = model.store, model.xp
    on = (store.kind == store.kind_id(NAME)) & (store.state == ACTIVATED) & (store["stimulation_h"] > 0)
    return xp.where(on, store[WEIGHT], xp.float32(0.0))


def infuse(model: CrsModel) -> None:
    """The dose enters the systemic blood pool at t = 0, resting, as at least ``min_agents`` agents; kills and divisions are carried through the pool."""
    p = model.config.cells.cart
    model.circulation.carry(NAME, CARRIED)
    model.circulation.infuse(NAME, p.dose, RESTING, step=0, min_agents=p.min_agents)


#: the catalog entry (registered by carabm.biology, whose order sets the HDF5 type codes)
CELL_TYPE = CellType(
    NAME, "CAR-T", home="blood", states=STATES, activated="activated", section=CarT, spec=kind_spec,
    colour=(0.10, 0.90, 0.20),  # green: the engineered cells
    variables=VARIABLES, variable_docs=VARIABLE_DOCS, layers={"decide": step, "blood_pool": pool_step, "secrete": secrete}, placed=False, setup=infuse,
    tallies=("cart_kills",),
)  # fmt: skip
