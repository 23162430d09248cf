"""CAR-T expansion kinetics: a newly activated cell first completes its first cell cycle
(``cells.cart.first_division_h``) and only then divides; cells already cycling divide at once."""

import numpy as np
import pytest

from carabm.biology import cart
from carabm.biology.model import CrsModel
from carabm.engine.backend import get_backend
from carabm.io.config import load_config
from carabm.simulation import build_lattice

SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=600", "cells.microglia.initial_count=30", "cells.cart.dose=0",
         "cells.macrophage.initial_count=0", "cells.monocyte.initial_count=0", "cells.cart.doubling_time_h=1",
         "cells.cart.activation_per_h=1000", "cells.cart.death_resting_per_day=0", "cells.cart.death_contraction_per_day=0",
         "run.dt_min=30"]  # fmt: skip


def world(state: int, *extra: str) -> tuple[CrsModel, int]:
    """A crowded tumour with 200 whole CAR-T cells placed in tissue, in ``state``; returns the model and their number."""
    config = load_config(None, SMALL + list(extra))
    model = CrsModel(config, build_lattice(config), get_backend("numpy"))
    tissue = model.lattice.flat_indices("tissue")
    slots = model.store.place_random("cart", 200, tissue, seed=5, purpose="test:cart", state=state)
    return model, int(slots.size)


def cart_cells_after(model: CrsModel, hours: float) -> int:
    for _ in range(round(hours / model.dt_h)):
        model.begin_step()
        cart.step(model)
        model.flush_deaths()
    return model.store.count("cart")


@pytest.mark.parametrize("lag_h", [6.0, 12.0])
def test_newly_activated_cells_wait_for_their_first_cell_cycle(lag_h):
    model, n = world(cart.RESTING, f"cells.cart.first_division_h={lag_h}")
    before = cart_cells_after(model, lag_h - 1.0)  # activated within the first steps (fast activation), lag not over
    activated = (np.asarray(model.store.state)[np.asarray(model.mask_of("cart"))] == cart.ACTIVATED).mean()
    assert activated > 0.3  # most touch a B cell and activate at once
    assert before == n  # none divided before its first cycle ended
    assert cart_cells_after(model, 4.0) > 1.3 * n  # then they divide every hour


def test_without_a_lag_or_when_already_cycling_cells_divide_at_once():
    no_lag, n = world(cart.RESTING, "cells.cart.first_division_h=0")
    assert cart_cells_after(no_lag, 3.0) > 1.3 * n
    cycling, n = world(cart.ACTIVATED, "cells.cart.first_division_h=24")  # activated earlier (lag_h = 0): cycling
    cycling.store["stimulation_h"][...] = np.where(np.asarray(cycling.mask_of("cart")), 36.0, 0.0)
    assert cart_cells_after(cycling, 3.0) > 1.3 * n


def test_the_lag_of_a_lineage_is_counted_down_and_inherited():
    model, _ = world(cart.RESTING, "cells.cart.first_division_h=5")
    cart_cells_after(model, 3.0)
    cells = np.asarray(model.mask_of("cart"))
    lag = np.asarray(model.store["lag_h"])[cells]
    state = np.asarray(model.store.state)[cells]
    assert np.all(lag[state == cart.RESTING] == 0)
    assert np.all((lag[state == cart.ACTIVATED] > 0) & (lag[state == cart.ACTIVATED] < 5))
    cart_cells_after(model, 4.0)
    cells = np.asarray(model.mask_of("cart"))
    assert np.all(np.asarray(model.store["lag_h"])[cells] == 0)  # every lag over; daughters copied a zero
