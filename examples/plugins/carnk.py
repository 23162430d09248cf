"""CD19 CAR-NK cells, a carabm plug-in: name it in a config's ``plugins: [carnk.py]`` (see carnk.yaml).

CAR-NK cells are infused into the blood, home to the tumour, kill CD19+ B cells on contact,
and secrete some IFN-γ, TNF-α and little GM-CSF; they divide little and persist for a shorter
time than CAR-T cells. Liu et al., NEJM 2020 (382:545) treated 11 patients with cord-blood
CD19 CAR-NK cells (armoured with IL-15) and saw responses in 8, and no CRS, ICANS or GVHD.
Every parameter gives its source or says "assumed" with the reasoning. Built step by step in
docs/extending.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from carabm.biology.api import (
    CellSection,
    CellType,
    CytokineMap,
    KindSpec,
    bcell,
    cytokine_map,
    register_cell_type,
    rules,
    targeted,
)

NAME = "carnk"
STATES = ("resting", "activated", "exhausted")
RESTING, ACTIVATED, EXHAUSTED = range(len(STATES))
#: per-agent variable: B cells this cell has killed (the CAR-T cells' column of the same name)
VARIABLES = {"kills": "int32"}


class CarNK(CellSection):
    """CD19 CAR-NK cells: infused into the blood at t = 0, kill CD19+ B cells, persist briefly, secrete little."""

    dose: float = Field(7e8, ge=0, description="CAR-NK cells infused at t = 0 [cells]; Liu et al., NEJM 2020: highest dose level 1e7/kg x 70 kg")
    speed_um_min: float = Field(10.0, ge=0, description="NK-cell speed [um/min]; assumed: NK cells crawl about as fast as T cells in tissue, a little slower")
    homing_per_h: float = Field(4.0, ge=0, description="extravasation rate from blood at the vessel wall [1/h]; assumed: somewhat below CAR-T (6/h)")
    activation_per_h: float = Field(6.0, ge=0, description="activation rate on contact with a CD19+ B cell [1/h]; assumed: NK cells are pre-armed (cytotoxic granules ready)")
    kill_rate_per_h: float = Field(0.15, ge=0, description="lysis rate of a contacted target by an activated cell [1/h]; assumed, as CAR-T (0.12/h)")
    max_kills: int = Field(6, ge=1, description="kills before exhaustion [targets]; assumed: NK cells kill a few targets serially (Bhat & Watzl, PLoS One 2007), fewer than CAR-T (25)")
    doubling_time_h: float = Field(48.0, gt=0, description="division time when stimulated [h]; assumed: NK cells expand little in vivo")
    max_divisions: int = Field(2, ge=0, description="divisions before exhaustion; assumed: little expansion (CAR-T: 10)")
    death_resting_per_day: float = Field(0.1, ge=0, description="death rate of resting cells [1/day]; assumed: NK cells live ~1-2 weeks without cytokine support (CAR-T: 0.02)")
    death_activated_per_day: float = Field(0.3, ge=0, description="death rate of activated cells [1/day]; assumed: activation-induced death of NK cells")
    death_exhausted_per_day: float = Field(1.0, ge=0, description="death rate of exhausted cells [1/day]; assumed (CAR-T: 0.6)")
    secretion_pg_cell_h: CytokineMap = Field(
        cytokine_map(IFNg=5e-4, TNFa=2.5e-4, GMCSF=1e-4),
        description="secretion of an activated cell [pg/cell/h]; assumed: IFN-g 1/4, TNF-a 1/2, GM-CSF 1/10 of CAR-T, no IL-2 "
        "(NK cells release less GM-CSF and IFN-g, the drivers of myeloid activation in CRS; Liu et al., NEJM 2020: no CRS)",
    )


def kind_spec(p: CarNK, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: walks in tissue, blood and CNS, homes from blood, crosses the BBB (as CAR-T cells)."""
    return KindSpec(NAME, p.speed_um_min, ("tissue", "blood", "cns"), extravasation_per_h=p.homing_per_h,
                    intravasation_per_h=0.02, bbb_crossing=True, variables=VARIABLES)  # fmt: skip


def death_per_day(p: CarNK, state: Any, xp: Any) -> Any:
    """Death rate [1/day] of each state."""
    return xp.where(state == EXHAUSTED, p.death_exhausted_per_day, xp.where(state == ACTIVATED, p.death_activated_per_day, p.death_resting_per_day))


def step(model: Any) -> None:
    """Activation on contact with a B cell, killing, exhaustion, division and death of every CAR-NK cell."""
    p = model.config.cells.carnk
    xp, store = model.xp, model.store
    cells = model.mask_of(NAME)
    state = store.state
    target_slot, has_target = model.random_neighbour_of_kind(bcell.NAME, "carnk:target")

    activate = cells & has_target & (state == RESTING) & (model.uniform_all("carnk:activate") < rules.probability(p.activation_per_h, model.dt_h))
    state = xp.where(activate, ACTIVATED, state)
    kill = cells & has_target & (state == ACTIVATED) & (model.uniform_all("carnk:kill") < rules.probability(p.kill_rate_per_h, model.dt_h))
    kills = store["kills"] + kill.astype(xp.int32)
    store["kills"][...] = xp.where(cells, kills, store["kills"])
    state = xp.where(cells & (state == ACTIVATED) & (kills >= p.max_kills), EXHAUSTED, state)
    store.state[...] = xp.where(cells, state.astype(store.state.dtype), store.state)
    model.tally("carnk_kills", kill)

    dies = cells & (model.uniform_all("carnk:death") < rules.probability(death_per_day(p, state, xp) / 24.0, model.dt_h))
    rate = rules.rate_per_h_from_half_life(p.doubling_time_h)
    divides = cells & (state == ACTIVATED) & ~dies & (model.uniform_all("carnk:divide") < rules.probability(rate, model.dt_h))
    model.mark_dead(dies)
    bcell.lyse(model, targeted(model, target_slot, kill))
    model.movement.divide(divides, model.step_index, "carnk:daughter")  # daughters start with zero kills


def secrete(model: Any) -> None:
    """Activated CAR-NK cells secrete IFN-γ, TNF-α and a little GM-CSF (steroids lower it, as for all cells)."""
    active = model.mask_of(NAME) & (model.store.state == ACTIVATED)
    for name, rate in model.config.cells.carnk.secretion_pg_cell_h.as_dict().items():
        model.secretion.add(name, model.voxels(), active, rate * model.effects.cytokine_production)


def pool_step(model: Any) -> None:
    """Death of circulating CAR-NK cells in the systemic pool (stochastic rounding of the expected deaths)."""
    p = model.config.cells.carnk
    pool = model.circulation.pool
    k = model.store.kind_id(NAME)
    for state, per_day in ((RESTING, p.death_resting_per_day), (ACTIVATED, p.death_activated_per_day), (EXHAUSTED, p.death_exhausted_per_day)):
        expected = pool[k, state] * rules.probability(per_day / 24.0, model.dt_h)
        whole = int(expected)
        whole += int(model.uniform_scalar(f"carnk:pool_death:{state}") < expected - whole)
        pool[k, state] = max(0, pool[k, state] - whole)


def infuse(model: Any) -> None:
    """The dose enters the systemic blood pool at t = 0, resting."""
    model.circulation.infuse(NAME, model.config.cells.carnk.dose, RESTING, step=0)


CELL_TYPE = register_cell_type(CellType(
    NAME, "CAR-NK", home="blood", states=STATES, activated="activated", section=CarNK, spec=kind_spec,
    colour=(1.00, 0.60, 0.60),  # salmon: apart from the CAR-T green and the field colours
    variables=VARIABLES, layers={"decide": step, "blood_pool": pool_step, "secrete": secrete},
    placed=False, setup=infuse, tallies=("carnk_kills",),
))  # fmt: skip
