"""Agent store: add/remove/compaction, occupancy consistency, neighbourhood reads."""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine.agents import AgentStore, KindSpec, choose_free_voxels
from carabm.engine.lattice import BLOOD, TISSUE, neighbour_offsets

SHAPE = (6, 7, 8)


def make_store(capacity: int = 16) -> AgentStore:
    kinds = [
        KindSpec("a", variables={"timer": "float32", "divisions": "int32"}),
        KindSpec("b", allowed_compartments=("tissue", "blood"), variables={"timer": np.float32}),
    ]
    return AgentStore(kinds, SHAPE, capacity=capacity)


def random_positions(rng: np.random.Generator, count: int) -> np.ndarray:
    flat = rng.choice(int(np.prod(SHAPE)), count, replace=False)
    return np.stack(np.unravel_index(flat, SHAPE), axis=1)


def test_kindspec_normalises_and_validates():
    kind = KindSpec("t", allowed_compartments=("blood", "tissue", 1), bbb_crossing=True)
    assert kind.allowed_compartments == (TISSUE, BLOOD)
    assert kind.allows(2) and not kind.allows(3)
    with pytest.raises(ValueError, match="unknown compartment"):
        KindSpec("x", allowed_compartments=("liver",))
    with pytest.raises(ValueError, match="speed_um_min"):
        KindSpec("x", speed_um_min=-1)
    with pytest.raises(ValueError, match="reserved"):
        KindSpec("x", variables={"state": "int32"})
    with pytest.raises(ValueError, match="dtypes"):
        AgentStore([KindSpec("a", variables={"t": "float32"}), KindSpec("b", variables={"t": "int32"})], SHAPE)


def test_add_grows_by_doubling_and_keeps_columns():
    store = make_store(capacity=16)
    rng = np.random.default_rng(0)
    pos = random_positions(rng, 40)
    slots = store.add("a", pos[:30], state=2, timer=np.arange(30, dtype=np.float32))
    store.add("b", pos[30:], timer=7.0)
    assert store.n == 40 and store.capacity == 64
    assert np.array_equal(slots, np.arange(30))
    assert np.array_equal(store.position, pos)
    assert np.array_equal(store.id, np.arange(40))
    assert np.array_equal(store["timer"][:30], np.arange(30))
    assert np.all(store["timer"][30:] == 7) and np.all(store["divisions"] == 0)
    assert store["timer"].dtype == np.float32 and store["divisions"].dtype == np.int32
    assert store.count("a") == 30 and store.count("b") == 10
    store.check()


def test_add_rejects_occupied_duplicate_and_outside():
    store = make_store()
    store.add("a", [[1, 1, 1]])
    with pytest.raises(ValueError, match="occupied"):
        store.add("a", [[1, 1, 1]])
    with pytest.raises(ValueError, match="two new agents"):
        store.add("a", [[2, 2, 2], [2, 2, 2]])
    with pytest.raises(ValueError, match="outside"):
        store.add("a", [[6, 0, 0]])
    with pytest.raises(KeyError):
        store.add("a", [[3, 3, 3]], nonsense=1)
    store.check()


def test_remove_compacts_keeps_order_and_ids():
    store = make_store()
    rng = np.random.default_rng(1)
    pos = random_positions(rng, 50)
    store.add("a", pos, timer=np.arange(50, dtype=np.float32))
    dead = rng.random(50) < 0.4
    assert store.kill(dead) == dead.sum()
    assert np.array_equal(store.id, np.flatnonzero(~dead))
    assert np.array_equal(store.position, pos[~dead])
    assert np.array_equal(store["timer"], np.flatnonzero(~dead))
    store.check()
    store.remove(np.array([0, 3]))
    store.check()
    new = store.add("b", random_positions(rng, 200)[:0])  # empty add is fine
    assert new.size == 0
    assert store.next_id == 50  # ids are never reused


def test_reorder_and_copy_rows():
    store = make_store()
    rng = np.random.default_rng(2)
    pos = random_positions(rng, 30)
    store.add("a", pos[:20], state=3, timer=1.5)
    store.reorder(rng.permutation(20))
    store.check()
    with pytest.raises(ValueError):
        store.reorder(np.zeros(20, dtype=int))
    parents = np.array([4, 7])
    ids = store.id[parents].copy()
    daughters = store.copy_rows(parents, pos[20:22])
    assert np.array_equal(store.id[daughters], [20, 21])
    assert np.all(store.state[daughters] == 3) and np.all(store["timer"][daughters] == 1.5)
    assert np.array_equal(store.id[parents], ids)
    store.check()


def test_neighbour_slots_and_contacts_match_brute_force():
    store = make_store()
    rng = np.random.default_rng(3)
    pos = random_positions(rng, 150)
    store.add("a", pos[:100])
    store.add("b", pos[100:])
    occupancy = -np.ones(SHAPE, dtype=int)
    occupancy[tuple(pos.T)] = np.arange(150)
    assert np.array_equal(store.occupancy, occupancy)
    for connectivity in (6, 26):
        slots = store.neighbour_slots(connectivity)
        offsets = neighbour_offsets(connectivity)
        expected = -np.ones_like(slots)
        for i, p in enumerate(pos):  # brute-force reference
            for j, off in enumerate(offsets):
                q = p + off
                if np.all(q >= 0) and np.all(q < SHAPE):
                    expected[i, j] = occupancy[tuple(q)]
        assert np.array_equal(slots, expected)
        assert np.array_equal(store.contact_counts(connectivity), (expected >= 0).sum(axis=1))
        kind_b = (expected >= 0) & (np.where(expected >= 0, store.kind[np.maximum(expected, 0)], 0) == 1)
        assert np.array_equal(store.contact_counts(connectivity, kind="b"), kind_b.sum(axis=1))
        inside = np.array([[np.all((p + o >= 0) & (p + o < SHAPE)) for o in offsets] for p in pos])
        assert np.array_equal(store.free_neighbours(connectivity), inside & (expected < 0))


def test_choose_free_voxels_depends_only_on_voxels():
    store = make_store()
    candidates = np.arange(0, int(np.prod(SHAPE)), 3)
    store.add("a", np.stack(np.unravel_index(candidates[:5], SHAPE), axis=1))
    a = choose_free_voxels(store, candidates, 20, seed=9, step=4, purpose="x")
    b = choose_free_voxels(store, np.random.default_rng(0).permutation(candidates), 20, seed=9, step=4, purpose="x")
    assert np.array_equal(a, b) and a.size == 20
    assert not np.isin(a, candidates[:5]).any()
    assert choose_free_voxels(store, candidates[:5], 3, seed=9, step=4, purpose="x").size == 0
    slots = store.place_random("b", 10, candidates, seed=9)
    assert slots.size == 10
    store.check()
