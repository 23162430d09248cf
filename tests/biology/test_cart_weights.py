"""Weighted CAR-T agents (super-individuals): enough agents at any dose and burden, per-cell
behaviour independent of the weight, and a bit-identical resume with weights."""

import numpy as np
import pytest

from carabm.biology import cart
from carabm.biology.model import CrsModel
from carabm.engine.agents import WEIGHT
from carabm.engine.backend import get_backend
from carabm.io.checkpoint import read_checkpoint, restore_model_state, write_checkpoint
from carabm.io.config import load_config
from carabm.simulation import Simulation, build_lattice

SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=300", "cells.microglia.initial_count=30"]


def make(*extra: str) -> CrsModel:
    config = load_config(None, SMALL + list(extra))
    return CrsModel(config, build_lattice(config), get_backend("numpy"))


@pytest.mark.parametrize("burden", [1e9, 1e10, 1e11, 1e12])
@pytest.mark.parametrize("dose", [3.5e7, 1.4e8, 5.6e8])
def test_every_infusion_has_enough_agents_and_the_right_cells(burden, dose):
    model = make(f"patient.tumor_burden_cells={burden:g}", f"cells.cart.dose={dose:g}")
    circ, minimum = model.circulation, model.config.cells.cart.min_agents
    share = dose * model.scale  # the lattice's share of the dose [cells]
    agents = circ.pool_count("cart")
    assert agents >= minimum
    if share < minimum:
        assert agents == minimum and circ.pool_cells("cart") == pytest.approx(share, rel=1e-12)
    else:  # whole cells, as many as the share (stochastically rounded)
        assert circ.pool_weight[model.store.kind_id("cart"), cart.RESTING] == 1.0 and abs(agents - share) < 1.0


def engaged_world(weights: np.ndarray, *extra: str) -> CrsModel:
    """A model without infusion and CAR-T agents placed in tissue, activated and stimulated, with the given weights."""
    model = make("cells.cart.dose=0", "cells.macrophage.initial_count=0", "cells.monocyte.initial_count=0", *extra)
    tissue = model.lattice.flat_indices("tissue")
    slots = model.store.place_random("cart", weights.size, tissue, seed=3, purpose="test:cart", state=cart.ACTIVATED,
                                     stimulation_h=36.0)  # fmt: skip
    assert slots.size == weights.size
    model.store[WEIGHT][slots] = weights.astype(np.float32)
    return model


def decide(model: CrsModel, steps: int) -> None:
    """The CAR-T rules alone, step after step (therapies, deaths and fresh neighbourhoods as in a run)."""
    for _ in range(steps):
        model.begin_step()
        cart.step(model)
        model.flush_deaths()


def test_kills_per_cell_do_not_depend_on_the_weight():
    # crowded tumour: most CAR-T agents touch a B cell; fast killing for statistics; no deaths
    n = 400
    weights = np.where(np.arange(n) % 2 == 0, 1.0, 0.25)
    model = engaged_world(weights, "cells.bcell.initial_count=1100", "cells.cart.kill_rate_per_h=3", "cells.cart.max_kills=1000",
                          "cells.cart.death_contraction_per_day=0", "cells.cart.death_exhausted_per_day=0",
                          "cells.cart.doubling_time_h=1e9")  # fmt: skip
    ids_whole = set(np.asarray(model.store.id)[model.mask_of("cart") & (model.store[WEIGHT] == 1.0)].tolist())
    bcells = model.store.count("bcell")
    decide(model, 5)
    is_cart = model.mask_of("cart")
    whole = is_cart & np.isin(np.asarray(model.store.id), list(ids_whole))
    part = is_cart & ~whole
    kills_whole, kills_part = model.store["kills"][whole].mean(), model.store["kills"][part].mean()
    assert kills_whole > 0.5  # enough events to compare
    assert kills_part == pytest.approx(kills_whole, rel=0.2)  # per cell; without the 1/weight it would be 4x smaller
    # lysed B cells per cell of CAR-T: each quarter agent kills a quarter as often
    lysed = bcells - model.store.count("bcell")
    expected = kills_whole * (weights == 1.0).sum() + kills_whole * 0.25 * (weights < 1.0).sum()
    assert lysed == pytest.approx(expected, rel=0.2)


def test_divisions_per_cell_do_not_depend_on_the_weight():
    # sparse, stimulated, no deaths: whole agents split into free voxels, fractional agents double their weight
    n = 400
    weights = np.where(np.arange(n) % 2 == 0, 1.0, 0.3)
    model = engaged_world(weights, "cells.bcell.initial_count=0", "cells.cart.doubling_time_h=2",
                          "cells.cart.death_contraction_per_day=0", "cells.cart.max_divisions=1000")  # fmt: skip
    decide(model, 15)
    is_cart = model.mask_of("cart")
    weight, divisions = model.store[WEIGHT][is_cart], model.store["divisions"][is_cart]
    whole = weight == np.float32(1.0)  # whole agents and their daughters; fractional ones are 0.3 x 2^k
    # a division doubles the cells of either kind of agent, so both groups grow by the same factor
    growth_whole = weight[whole].sum() / (weights == 1.0).sum()
    growth_part = weight[~whole].sum() / (0.3 * (weights < 1.0).sum())
    assert growth_whole > 1.3
    assert growth_part == pytest.approx(growth_whole, rel=0.15)
    assert divisions[~whole].mean() > 0.2
    assert set(np.round(weight[~whole] / 0.3).astype(int).tolist()) <= {1, 2, 4}  # doubled while below 1
    assert model.store.count("cart") < 1.6 * n  # fractional agents do not multiply the agents


def test_contact_signal_scales_with_the_weight():
    n = 1000
    model = engaged_world(np.full(n, 0.25))
    model.begin_step()
    present = cart.engaged(model)[model.mask_of("cart")]
    assert present.mean() == pytest.approx(0.25, abs=0.05)
    weight = cart.stimulus_weight(model)[model.mask_of("cart")]
    assert np.all(weight == np.float32(0.25))


def test_resume_with_weights_is_bit_identical(tmp_path):
    config = load_config(None, SMALL + ["patient.tumor_burden_cells=1e11", "run.dt_min=30"])
    reference = Simulation(config)
    for _ in range(60):  # 30 h: homing, activation, first doublings of the weights
        reference.step()
    k = reference.model.store.kind_id("cart")
    assert reference.model.circulation.pool_weight[k, cart.RESTING] < 1.0  # fractional agents
    on_lattice = reference.model.store[WEIGHT][reference.model.mask_of("cart")]
    assert np.unique(on_lattice).size > 1  # some weights have doubled
    path = write_checkpoint(tmp_path / "w.ckpt", reference.model, run_id="r", timeseries_rows=61, config_yaml=config.to_yaml(),
                            backend="numpy")  # fmt: skip
    resumed = Simulation(config)
    restore_model_state(resumed.model, read_checkpoint(path).state)
    np.testing.assert_array_equal(resumed.model.circulation.pool_weight, reference.model.circulation.pool_weight)
    for _ in range(20):
        reference.step()
        resumed.step()
        assert reference.readouts() == resumed.readouts()
    a, b = reference.model.store, resumed.model.store
    np.testing.assert_array_equal(a[WEIGHT], b[WEIGHT])
    np.testing.assert_array_equal(a["kills"], b["kills"])
    np.testing.assert_array_equal(a["lag_h"], b["lag_h"])  # the first-cycle clock of newly activated cells
