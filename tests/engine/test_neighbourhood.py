"""Neighbourhood: the compiled CPU random neighbour draws the same neighbours as the array version."""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine.agents import AgentStore, KindSpec
from carabm.engine.neighbourhood import Neighbourhood, _cpu_kernel

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


@pytest.mark.skipif(_cpu_kernel() is None, reason="numba is not installed")
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
        # independently: a chosen neighbour is one of the flagged agents, next to the chooser
        chosen = np.nonzero(has)[0]
        assert np.all(among[slot[chosen]]) and np.all(slot[~has] == -1)
        gap = np.abs(store.position[slot[chosen]] - store.position[chosen]).max(axis=1)
        assert np.all(gap == 1)
        if step == 3:  # agents added after the table was made (daughters) have no column and no neighbour yet
            free = np.argwhere(store.occupancy < 0)[:3]
            store.add("a", free)
    assert has.shape == (store.n,)


@pytest.mark.skipif(_cpu_kernel() is None, reason="numba is not installed")
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
