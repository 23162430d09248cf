"""CAR-T cells: contact with CD19+ B cells activates them; they kill serially, divide while
stimulated, secrete IFN-γ, GM-CSF, TNF-α and IL-2, then exhaust and contract.

States: RESTING (infused, not yet stimulated), ACTIVATED, EXHAUSTED. ``stimulation_h``
counts down from ``stimulation_memory_h`` after each antigen contact; proliferation and
secretion need it above zero (a cell re-entering from the blood pool starts at zero).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carabm.biology import bcell, rules

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "cart"
RESTING, ACTIVATED, EXHAUSTED = 0, 1, 2
VARIABLES = {"kills": "int32", "divisions": "int32", "stimulation_h": "float32"}


def step(model: CrsModel) -> None:
    """Activation, serial killing, proliferation, exhaustion and death of every CAR-T cell."""
    p = model.config.cells.cart
    xp, store, effects = model.xp, model.store, model.effects
    cells = model.slots_of(NAME)
    if cells.size == 0:
        return
    state = store.state[cells]
    target_slot, has_target = model.random_neighbour_of_kind(cells, bcell.NAME, "cart:target")
    signalling = effects.cart_signalling  # dasatinib blocks CAR signalling (1 = free)

    # activation on contact with a CD19+ B cell
    activate = has_target & (state == RESTING) & (model.uniform(cells, "cart:activate") < rules.probability(p.activation_per_h * signalling, model.dt_h))
    state = xp.where(activate, ACTIVATED, state)

    # antigen contact keeps an activated cell stimulated; killing is serial
    engaged = has_target & (state == ACTIVATED)
    stimulation = store["stimulation_h"][cells]
    stimulation = xp.where(engaged & (signalling > 0.5), p.stimulation_memory_h, xp.maximum(stimulation - model.dt_h, 0.0))
    kill = engaged & (model.uniform(cells, "cart:kill") < rules.probability(p.kill_rate_per_h * signalling, model.dt_h))
    kills = store["kills"][cells] + kill.astype(xp.int32)
    store["kills"][cells] = kills
    store["stimulation_h"][cells] = stimulation.astype(xp.float32)

    # exhaustion after many kills or divisions
    divisions = store["divisions"][cells]
    exhausted = (state == ACTIVATED) & ((kills >= p.max_kills) | (divisions >= p.max_divisions))
    state = xp.where(exhausted, EXHAUSTED, state)
    store.state[cells] = state.astype(store.state.dtype)
    model.counters["cart_kills"] += int(kill.sum())

    # death: contraction after antigen loss, faster when exhausted
    rate_per_day = xp.where(
        state == EXHAUSTED,
        p.death_exhausted_per_day,
        xp.where((state == ACTIVATED) & (stimulation <= 0), p.death_contraction_per_day, p.death_resting_per_day),
    )
    dies = model.uniform(cells, "cart:death") < rules.probability(rate_per_day / 24.0, model.dt_h)

    # proliferation while stimulated (steroids slow it)
    rate_div = rules.rate_per_h_from_half_life(p.doubling_time_h) * effects.tcell_proliferation
    divides = (state == ACTIVATED) & (stimulation > 0) & ~dies & (model.uniform(cells, "cart:divide") < rules.probability(rate_div, model.dt_h))

    model.mark_dead(cells[dies])
    bcell.lyse(model, xp.unique(target_slot[kill]))
    parents, daughters = model.movement.divide(cells[divides], model.step_index, "cart:daughter")
    if parents.size:
        store["divisions"][parents] += 1
        store["divisions"][daughters] += 1


def secrete(model: CrsModel) -> None:
    """Activated, stimulated CAR-T cells secrete IFN-γ, GM-CSF, TNF-α and IL-2."""
    cells = model.slots_of(NAME)
    if cells.size == 0:
        return
    store = model.store
    active = cells[(store.state[cells] == ACTIVATED) & (store["stimulation_h"][cells] > 0)]
    voxels = model.voxel_of(active)
    for name, rate in model.config.cells.cart.secretion_pg_cell_h.as_dict().items():
        model.secretion.add(name, voxels, rate * model.effects.cytokine_production)


def pool_step(model: CrsModel) -> None:
    """Death of circulating CAR-T cells in the systemic pool (resting, contracting, exhausted)."""
    p = model.config.cells.cart
    pool = model.circulation.pool
    k = model.store.kind_id(NAME)
    rates = {RESTING: p.death_resting_per_day, ACTIVATED: p.death_contraction_per_day, EXHAUSTED: p.death_exhausted_per_day}
    for state, per_day in rates.items():
        expected = pool[k, state] * rules.probability(per_day / 24.0, model.dt_h)
        whole = int(expected)
        whole += int(model.uniform_scalar(f"cart:pool_death:{state}") < expected - whole)
        pool[k, state] = max(0, pool[k, state] - whole)


def engaged(model: CrsModel) -> Any:
    """Per agent: an activated CAR-T cell still stimulated by antigen (expresses CD40L)."""
    store = model.store
    return (store.kind == store.kind_id(NAME)) & (store.state == ACTIVATED) & (store["stimulation_h"] > 0)
