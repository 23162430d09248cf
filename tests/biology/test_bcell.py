"""Tumour B cells at a small size: CD19 antigen decides recognition, daughters inherit it, and the
product's fitness against the tumour decides whether the tumour is cleared or keeps growing."""

import math

import numpy as np
import pytest

from carabm.biology import bcell, cart
from carabm.biology.model import CrsModel
from carabm.engine.backend import get_backend
from carabm.engine.lattice import TISSUE
from carabm.errors import ConfigError
from carabm.io.checkpoint import read_checkpoint, restore_model_state, write_checkpoint
from carabm.io.config import load_config
from carabm.simulation import build_lattice

SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=300", "cells.macrophage.initial_count=20",
         "cells.monocyte.initial_count=4", "cells.microglia.initial_count=10", "run.backend=numpy"]  # fmt: skip


def make(*extra):
    config = load_config(None, SMALL + list(extra))
    return CrsModel(config, build_lattice(config), get_backend("numpy"))


def bcell_cd19(model):
    return np.asarray(model.store[bcell.CD19])[np.asarray(model.mask_of(bcell.NAME))]


def add_activated_cart(model, count):
    """``count`` activated CAR-T cells in free tissue voxels, as if they had homed and met antigen."""
    free = np.flatnonzero((model.lattice.labels.ravel() == TISSUE) & (np.asarray(model.store.occupancy).ravel() < 0))
    chosen = np.random.default_rng(0).choice(free, size=count, replace=False)
    position = np.stack(np.unravel_index(chosen, model.lattice.shape), axis=1)
    model.store.add(cart.NAME, position, state=cart.ACTIVATED, stimulation_h=model.config.cells.cart.stimulation_memory_h)
    model._agents_moved()


def lysed_after(model, steps):
    for _ in range(steps):
        model.step()
        model.readouts()
    return model.counters["bcell_lysed"]


def test_cd19_at_infusion_follows_the_patient():
    model = make("patient.cd19_negative_fraction=0.25", "patient.cd19_sites_per_cell=5000", "cells.bcell.cd19_spread=0.5")
    cd19 = bcell_cd19(model)
    assert cd19.size == 300
    negative = cd19 == 0
    assert 0.25 - 0.1 < negative.mean() < 0.25 + 0.1  # binomial(300, 0.25): SD 0.025
    logs = np.log(cd19[~negative])
    assert abs(np.median(logs) - math.log(5000)) < 0.15 and abs(logs.std() - 0.5) < 0.1
    others = np.asarray(model.store[bcell.CD19])[~np.asarray(model.mask_of(bcell.NAME))]
    assert np.all(others == 0)  # only B cells carry CD19


def test_recognition_rises_with_antigen_density_and_is_zero_without_it():
    model = make()
    n = model.store.n
    density = np.linspace(0.0, 8000.0, n).astype(np.float32)
    model.store[bcell.CD19][...] = density
    slots = np.arange(n)  # each agent "touches" itself: the rule only reads the target's density
    counts = np.zeros(n)
    for step in range(200):
        model.step_index = step
        counts += bcell.recognised(model, slots, np.ones(n, dtype=bool))
    p = model.config.cells.bcell
    expected = density**2 / (density**2 + p.cd19_recognition_sites**2)
    assert counts[density == 0].sum() == 0
    assert np.abs(counts / 200 - expected).max() < 0.15  # binomial(200): SD <= 0.035
    assert not bcell.recognised(model, slots, np.zeros(n, dtype=bool)).any()  # no contact, no signal


def test_antigen_negative_cells_are_never_killed():
    positive = make("cells.cart.dose=0")
    add_activated_cart(positive, 150)
    killed = lysed_after(positive, 40)
    assert killed > 5  # the same CAR-T cells kill a CD19+ tumour (about 25 expected)
    negative = make("cells.cart.dose=0", "patient.cd19_negative_fraction=1.0")
    add_activated_cart(negative, 150)
    assert lysed_after(negative, 40) == 0
    assert negative.counters["cart_kills"] == 0


def test_daughters_inherit_their_parents_antigen():
    model = make("cells.cart.dose=0", "cells.bcell.doubling_time_h=0.5", "patient.cd19_negative_fraction=0.5")
    parents_cd19 = set(bcell_cd19(model).tolist())
    slots, daughters = model.movement.divide(model.mask_of(bcell.NAME), 1, "test:divide")
    assert daughters.size > 50
    cd19 = np.asarray(model.store[bcell.CD19])
    assert np.array_equal(cd19[np.asarray(daughters)], cd19[np.asarray(slots)])
    for _ in range(5):  # the grow layer, through whole steps
        model.step()
    after = bcell_cd19(model)
    assert after.size > 300 + daughters.size and set(after.tolist()) <= parents_cd19


def test_division_limit_follows_the_products_fitness():
    assert bcell.cart_division_limit(make()) == make().config.cells.cart.max_divisions
    assert bcell.cart_division_limit(make("patient.cart_expansion_capacity=0.25")) == pytest.approx(
        make().config.cells.cart.max_divisions - 2.0)


def test_each_kill_extends_the_division_programme():
    model = make("cells.cart.divisions_per_kill=0.1")
    base = bcell.cart_division_limit(model)
    kills = np.array([0, 5, 25], dtype=np.int32)
    np.testing.assert_allclose(bcell.cart_division_limit(model, kills), base + np.array([0.0, 0.5, 2.5]))
    assert bcell.cart_division_limit(make("cells.cart.divisions_per_kill=0"), kills) == base


def test_a_cell_that_killed_divides_past_the_programme_of_one_that_did_not():
    """Activated CAR-T cells 10 divisions deep (the default programme): those that killed 20 targets go on (2 more
    divisions at 0.1 per kill), those that killed none exhaust."""
    model = make("cells.cart.dose=0", "cells.cart.divisions_per_kill=0.1")
    add_activated_cart(model, 60)
    cells = np.flatnonzero(np.asarray(model.mask_of(cart.NAME)))
    model.store["divisions"][cells] = 10
    killers = cells[::2]
    model.store["kills"][killers] = 20
    model.step()
    alive = np.asarray(model.mask_of(cart.NAME))
    state, kills = np.asarray(model.store.state)[alive], np.asarray(model.store["kills"])[alive]
    assert (kills >= 20).sum() >= 25 and (kills == 0).sum() >= 25  # kills only grow: the two groups, wherever they moved
    assert not (state[kills >= 20] == cart.EXHAUSTED).any()
    assert (state[kills == 0] == cart.EXHAUSTED).all()


def test_fitness_sets_when_dividing_cart_cells_exhaust():
    """Activated CAR-T cells 8 divisions deep: exhausted at once when the product can make only 8 (capacity 1/4), not at 10."""
    states = {}
    for capacity in (1.0, 0.25):
        # no extension by kills: cells that kill in this step would go on past 8
        model = make("cells.cart.dose=0", f"patient.cart_expansion_capacity={capacity}", "cells.cart.divisions_per_kill=0")
        add_activated_cart(model, 50)
        cells = np.asarray(model.mask_of(cart.NAME))
        model.store["divisions"][cells] = 8
        model.step()
        cells = np.asarray(model.mask_of(cart.NAME))
        states[capacity] = np.asarray(model.store.state)[cells]
    assert not (states[1.0] == cart.EXHAUSTED).any()
    assert (states[0.25] == cart.EXHAUSTED).all()


def tumour_after(dose, burden_cells, steps=144):
    """The lattice tumour after ``steps`` of 15 min, with the lattice's share of ``dose`` placed in it, activated (as if homed)."""
    config = load_config(None, SMALL + ["lattice.shape=[4, 14, 26]", "cells.bcell.initial_count=150", "cells.cart.dose=0",
                                        f"patient.tumor_burden_cells={burden_cells}", "run.dt_min=15"])  # fmt: skip
    model = CrsModel(config, build_lattice(config), get_backend("numpy"))
    add_activated_cart(model, round(dose * model.scale))
    for _ in range(steps):
        model.step()
    return model.readouts()["tumor_burden"]


def test_low_dose_high_burden_leaves_the_tumour_growing_while_the_default_shrinks_it():
    # the default dose against a 1e9-cell tumour (21 CAR-T cells among 150 B cells), and a quarter of it against
    # 5e9 cells (1 among 150): over 36 h the first kills faster than the tumour grows, the second does not
    assert tumour_after(1.4e8, 1e9) < 0.5 * 150
    assert tumour_after(3.5e7, 5e9) > 150


def test_checkpoint_resume_keeps_the_antigen_bit_identical(tmp_path):
    config = load_config(None, SMALL + ["patient.cd19_negative_fraction=0.3", "cells.bcell.doubling_time_h=2"])
    reference = CrsModel(config, build_lattice(config), get_backend("numpy"))
    for _ in range(10):
        reference.step()
        reference.readouts()
    path = write_checkpoint(tmp_path / "b.ckpt", reference, run_id="r", timeseries_rows=10, config_yaml=config.to_yaml(), backend="numpy")
    resumed = CrsModel(config, build_lattice(config), get_backend("numpy"))
    restore_model_state(resumed, read_checkpoint(path).state)
    assert np.array_equal(np.asarray(resumed.store[bcell.CD19]), np.asarray(reference.store[bcell.CD19]))
    for _ in range(10):
        reference.step()
        resumed.step()
        assert reference.readouts() == resumed.readouts()
    assert np.array_equal(np.asarray(resumed.store[bcell.CD19]), np.asarray(reference.store[bcell.CD19]))
    assert np.array_equal(np.asarray(resumed.store.id), np.asarray(reference.store.id))


@pytest.mark.parametrize(("key", "value"), [("cd19_negative_fraction", "1.5"), ("cart_expansion_capacity", "0"),
                                            ("cd19_sites_per_cell", "-1")])  # fmt: skip
def test_bad_traits_are_one_line_errors(key, value):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"patient.{key}={value}"])
    assert f"patient.{key}" in str(info.value) and len(str(info.value).splitlines()) == 1
