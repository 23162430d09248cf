"""Blood circulation: infusion scaling, exchange equilibrium, conservation, placement in blood."""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.circulation import BloodCirculation
from carabm.engine.lattice import BLOOD, TISSUE, Lattice, default_layout
from carabm.engine.movement import Movement

VOXEL_UM = 10.0
SHAPE = (8, 16, 30)


def world(pool_over_lattice: float = 10.0, transit_min: float = 1.0, seed: int = 3):
    lattice = Lattice(default_layout(SHAPE, VOXEL_UM), VOXEL_UM)
    kinds = [
        KindSpec("cart", speed_um_min=5, allowed_compartments=("blood", "tissue"), extravasation_per_h=1.0),
        KindSpec("bcell", allowed_compartments=("tissue",)),
        KindSpec("mono", allowed_compartments=("blood", "tissue"), circulates=False),
    ]
    store = AgentStore(kinds, SHAPE)
    lattice_ml = lattice.count(BLOOD) * lattice.voxel_volume_ml
    scale = pool_over_lattice * lattice_ml / 5000.0
    circulation = BloodCirculation(store, lattice, dt_min=1.0, seed=seed, scale=scale, transit_min=transit_min)
    return lattice, store, circulation


def test_volumes_and_infusion_scaling():
    lattice, store, circulation = world()
    assert circulation.pool_volume_ml == pytest.approx(5000.0 * circulation.scale)
    assert circulation.lattice_volume_ml == pytest.approx(lattice.count(BLOOD) * (VOXEL_UM * 1e-4) ** 3)
    assert circulation.infuse("cart", 1000 / circulation.scale) == 1000
    assert circulation.pool_count("cart") == 1000
    # all in the pool: count per µL over the represented volume
    assert circulation.blood_count_per_ul("cart") == pytest.approx(1000 / (circulation.total_volume_ml * 1000))
    added = [circulation.infuse("cart", 2.5 / circulation.scale, state=1, step=s) for s in range(400)]
    assert set(added) == {2, 3} and np.mean(added) == pytest.approx(2.5, abs=0.1)
    with pytest.raises(ValueError, match="does not circulate"):
        circulation.infuse("mono", 10)
    with pytest.raises(ValueError, match="does not circulate"):
        circulation.infuse("bcell", 10)
    with pytest.raises(ValueError, match=">= 0"):
        circulation.infuse("cart", -1)


def test_exchange_conserves_and_reaches_equal_densities():
    lattice, store, circulation = world(pool_over_lattice=10.0)
    store.place_random("bcell", 300, lattice.flat_indices(TISSUE), seed=1)
    store.place_random("mono", 20, lattice.flat_indices(BLOOD), seed=1)
    total = 3000
    circulation.infuse("cart", total / circulation.scale)
    lattice_counts, pool_counts = [], []
    for step in range(300):
        circulation.exchange(step)
        store.check()
        assert circulation.pool_count("cart") + store.count("cart") == total
        assert store.count("bcell") == 300 and store.count("mono") == 20  # non-circulating kinds stay
        lattice_counts.append(circulation.lattice_count("cart"))
        pool_counts.append(circulation.pool_count("cart"))
    labels = lattice.labels.ravel()[store.flat_index()]
    assert np.all(labels[store.kind == 0] == BLOOD)
    v_lattice, v_pool = circulation.lattice_volume_ml, circulation.pool_volume_ml
    expected_lattice = total * v_lattice / (v_lattice + v_pool)  # equal densities, total conserved
    assert np.mean(lattice_counts[100:]) == pytest.approx(expected_lattice, rel=0.05)
    density_lattice = np.mean(lattice_counts[100:]) / v_lattice
    density_pool = np.mean(pool_counts[100:]) / v_pool
    assert density_lattice == pytest.approx(density_pool, rel=0.05)
    per_ul = circulation.blood_count_per_ul("cart")
    assert per_ul == pytest.approx(total / (circulation.total_volume_ml * 1000))


def test_equilibrium_approach_follows_transit_time():
    # from an empty lattice the lattice count relaxes with rate (1 + V_L/V_P) q per step
    lattice, store, circulation = world(pool_over_lattice=20.0, transit_min=5.0)
    total = 4000
    circulation.infuse("cart", total / circulation.scale)
    q = circulation.exchange_probability
    r = circulation.lattice_volume_ml / circulation.pool_volume_ml
    expected_eq = total * r / (1 + r)
    counts = []
    for step in range(12):
        circulation.exchange(step)
        counts.append(circulation.lattice_count("cart"))
    steps = np.arange(1, 13)
    expected = expected_eq * (1 - (1 - q * (1 + r)) ** steps)
    assert np.allclose(counts, expected, rtol=0.12, atol=8)


def test_states_are_kept_through_the_pool_and_crowding_is_respected():
    lattice, store, circulation = world(pool_over_lattice=0.5)
    n_blood = lattice.count(BLOOD)
    circulation.infuse("cart", 3 * n_blood / circulation.scale, state=4)  # more than the vessel holds
    for step in range(20):
        circulation.exchange(step)
        store.check()
        assert store.count("cart") <= n_blood
        assert circulation.pool_count("cart", state=4) + store.count("cart") == 3 * n_blood
    assert np.all(store.state == 4) and circulation.pool_count("cart", state=0) == 0


def test_exchange_with_movement_does_not_depend_on_storage_order():
    results = []
    for permute in (False, True):
        lattice, store, circulation = world(seed=8)
        store.place_random("cart", 200, lattice.flat_indices(BLOOD), seed=2)
        store.place_random("bcell", 200, lattice.flat_indices(TISSUE), seed=2)
        if permute:
            store.reorder(np.random.default_rng(0).permutation(store.n))
        circulation.infuse("cart", 500 / circulation.scale)
        movement = Movement(store, lattice, dt_min=1.0, seed=8)
        for step in range(15):
            circulation.exchange(step)
            movement.step(step)
            movement.transmigrate(step)
        order = np.argsort(store.id)
        results.append((store.id[order].copy(), store.position[order].copy(), circulation.pool.copy()))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def carried_world():
    lattice = Lattice(default_layout(SHAPE, VOXEL_UM), VOXEL_UM)
    kinds = [KindSpec("cart", speed_um_min=5, allowed_compartments=("blood", "tissue"), variables={"divisions": "int32", "lag_h": "float32"})]
    store = AgentStore(kinds, SHAPE)
    scale = 10.0 * lattice.count(BLOOD) * lattice.voxel_volume_ml / 5000.0
    return lattice, store, BloodCirculation(store, lattice, dt_min=1.0, seed=4, scale=scale)


def test_carried_variables_survive_the_pool_in_expectation_and_others_reset():
    lattice, store, circulation = carried_world()
    circulation.carry("cart", ("divisions",))
    slots = store.place_random("cart", 200, lattice.flat_indices(BLOOD), seed=2, state=1)
    store["divisions"][slots] = np.where(np.arange(slots.size) % 2 == 0, 6, 7)  # mean 6.5 in state 1
    store["lag_h"][slots] = 5.0
    for step in range(40):  # everyone leaves and comes back many times
        circulation.exchange(step)
    back = store.kind == 0
    assert back.sum() > 10
    divisions = np.asarray(store["divisions"])[back]
    assert set(divisions.tolist()) <= {6, 7} and divisions.mean() == pytest.approx(6.5, abs=0.25)  # kept, not reset to 0
    assert circulation.pool_means["divisions"][0, 1] == pytest.approx(6.5, abs=0.25)
    assert np.all(np.asarray(store["lag_h"])[back] == 0)  # not carried: a passage resets it
    # infusion of fresh cells into the same state dilutes the mean by their share
    before, agents = circulation.pool_means["divisions"][0, 1], circulation.pool_count("cart", 1)
    added = circulation.infuse("cart", agents / circulation.scale, state=1, step=99)
    assert circulation.pool_means["divisions"][0, 1] == pytest.approx(before * agents / (agents + added))
    # checkpointed with the pool; a state from before carried variables restores means of 0
    state = circulation.checkpoint_state()
    _, _, other = carried_world()
    other.carry("cart", ("divisions",))
    other.restore_checkpoint_state(state)
    np.testing.assert_array_equal(other.pool_means["divisions"], circulation.pool_means["divisions"])
    other.restore_checkpoint_state({"pool": state["pool"]})
    assert not other.pool_means["divisions"].any()
    with pytest.raises(ValueError, match="no variable 'kills'"):
        other.carry("cart", ("kills",))
