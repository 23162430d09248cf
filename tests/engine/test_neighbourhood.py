"""Neighbourhood: the compiled CPU random neighbour draws the same neighbours as the array version; per-agent
sums over the 26 neighbours against the store's own contact counts and a brute-force sum."""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.jit_cache import compiled_twin
from carabm.engine.neighbourhood import Neighbourhood

SHAPE = (6, 7, 8)


def crowded_store(fraction: float, seed: int) -> AgentStore:
    rng = np.random.default_rng(seed)
    store = AgentStore([KindSpec("a"), KindSpec("b")], SHAPE, capacity=16)
    flat = rng.choice(int(np.prod(SHAPE)), int(fraction * np.prod(SHAPE)), replace=False)
    positions = np.stack(np.unravel_index(flat, SHAPE), axis=1)
    half = len(positions) // 2
    store.add("a", positions[:half])
    store.add("b", positions[half:])
    return store


@pytest.mark.skipif(compiled_twin("_neighbourhood_numba", "random_neighbour") is None, reason="numba is not installed")
@pytest.mark.parametrize("fraction", [0.05, 0.4, 0.9])
def test_compiled_random_neighbour_matches_the_array_version(fraction):
    store = crowded_store(fraction, seed=int(fraction * 100))
    hood = Neighbourhood(store, seed=7)
    rng = np.random.default_rng(1)
    for step in range(1, 6):
        among = rng.random(store.n) < 0.5
        slot, has = hood.random_neighbour(among, step, "kill")
        ref_slot, ref_has = hood.random_neighbour_arrays(among, step, "kill")
        assert slot.dtype == ref_slot.dtype and has.dtype == ref_has.dtype
        assert np.array_equal(slot, ref_slot) and np.array_equal(has, ref_has)
        who = rng.random(store.n) < 0.3  # only some agents search: each finds what it finds in a search by all
        some_slot, some_has = hood.random_neighbour(among, step, "kill", agents=who)
        assert np.array_equal(some_slot, np.where(who, slot, -1)) and np.array_equal(some_has, has & who)
        # independently: a chosen neighbour is one of the flagged agents, next to the chooser
        chosen = np.nonzero(has)[0]
        assert np.all(among[slot[chosen]]) and np.all(slot[~has] == -1)
        gap = np.abs(store.position[slot[chosen]] - store.position[chosen]).max(axis=1)
        assert np.all(gap == 1)
        if step == 3:  # agents added after the table was made (daughters) have no column and no neighbour yet
            free = np.argwhere(store.occupancy < 0)[:3]
            store.add("a", free)
    assert has.shape == (store.n,)


@pytest.mark.skipif(compiled_twin("_neighbourhood_numba", "random_neighbour") is None, reason="numba is not installed")
def test_every_flagged_neighbour_gets_picked_by_some_draw():
    """The pick is uniform over the flagged neighbours: over many steps each of them is drawn."""
    store = AgentStore([KindSpec("a")], SHAPE, capacity=16)
    centre = [[3, 3, 3]]
    ring = [[3, 3, 4], [3, 4, 4], [2, 2, 2], [4, 3, 3]]
    store.add("a", centre + ring)
    hood = Neighbourhood(store, seed=3)
    among = np.array([False, True, True, True, True])
    drawn = {int(hood.random_neighbour(among, step, "p")[0][0]) for step in range(200)}
    assert drawn == {1, 2, 3, 4}


SUM_SHAPE = (5, 6, 7)


def store_of_two_kinds(seed: int = 3) -> tuple[AgentStore, np.ndarray]:
    rng = np.random.default_rng(seed)
    store = AgentStore([KindSpec("a"), KindSpec("b")], SUM_SHAPE, capacity=16)
    flat = rng.choice(int(np.prod(SUM_SHAPE)), 150, replace=False)  # 150 of 210 voxels: many contacts, up to 26
    position = np.stack(np.unravel_index(flat, SUM_SHAPE), axis=1)
    store.add("a", position[:60])
    store.add("b", position[60:])
    return store, np.asarray(store.position)


def test_neighbour_sum_of_flags_is_the_contact_count():
    store, _ = store_of_two_kinds()
    is_b = np.asarray(store.kind) == store.kind_id("b")
    counts = Neighbourhood(store, seed=1).neighbour_sum(is_b)
    assert counts.dtype == np.float32
    assert np.array_equal(counts, store.contact_counts(26, "b").astype(np.float32))
    assert counts.max() >= 10  # the test reaches well past a handful of contacts


def test_neighbour_sum_adds_weights_of_the_26_neighbours_only():
    store, position = store_of_two_kinds(seed=5)
    weights = np.random.default_rng(7).uniform(0.0, 3.0, store.n).astype(np.float32)
    got = Neighbourhood(store, seed=1).neighbour_sum(weights)
    chebyshev = np.abs(position[:, None, :] - position[None, :, :]).max(axis=2)
    expected = ((chebyshev == 1) * weights[None, :].astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_neighbour_sum_agrees_with_has_neighbour_and_pads_daughters():
    store, _ = store_of_two_kinds(seed=9)
    hood = Neighbourhood(store, seed=1)
    is_a = np.asarray(store.kind) == store.kind_id("a")
    assert np.array_equal(hood.neighbour_sum(is_a) > 0, hood.has_neighbour(is_a))
    free = np.argwhere(np.asarray(store.occupancy) < 0)[:1]
    store.add("a", free)  # an agent added after the neighbourhood was cached: nobody's neighbour yet, sum 0
    sums = hood.neighbour_sum(np.ones(store.n, dtype=np.float32))
    assert sums.shape == (store.n,) and sums[-1] == 0.0


@pytest.mark.skipif(compiled_twin("_neighbourhood_numba", "neighbour_table") is None, reason="numba is not installed")
@pytest.mark.parametrize("fraction", [0.05, 0.9])
def test_compiled_neighbour_table_is_the_gather_of_the_occupancy(fraction):
    store = crowded_store(fraction, seed=3)
    table = Neighbourhood(store, seed=7).neighbours()
    voxel = store.padded_offsets(26)[:, None] + store.padded_flat()[None, :]
    expected = np.take(store.padded_occupancy.ravel(), voxel).astype(np.int64) + 1
    assert table.dtype == expected.dtype and np.array_equal(table, expected)
    assert table.max() > 0  # some agent has a neighbour


@pytest.mark.skipif(compiled_twin("_neighbourhood_numba", "neighbour_sum") is None, reason="numba is not installed")
@pytest.mark.parametrize("fraction", [0.05, 0.9])
def test_compiled_neighbour_sum_adds_as_numpy_does(fraction):
    """The twin's float32 sums are NumPy's bit for bit (weights spread over 12 binary orders, where order matters)."""
    store = crowded_store(fraction, seed=5)
    hood = Neighbourhood(store, seed=7)
    rng = np.random.default_rng(2)
    weights = (rng.random(store.n) * 2.0 ** rng.integers(-6, 6, store.n)).astype(np.float32)
    weights[rng.random(store.n) < 0.3] = 0.0
    got = hood.neighbour_sum(weights)
    padded = np.concatenate([np.zeros(1, dtype=np.float32), weights])
    expected = np.take(padded, hood.neighbours()).sum(axis=0, dtype=np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.count_nonzero(got) > store.n // 10  # the sums are not trivially zero
