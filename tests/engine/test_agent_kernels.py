"""The agent kernels (kernels/movement.cu, scatter.cu, rng.cu) emulated on the CPU against the NumPy engine.

Two worlds start identical; one runs the NumPy path, the other the kernel path
(``store.launcher`` = the host emulation of the CUDA sources, see conftest.py). Moves, wall
crossing, division, compaction and circulation draw the same Philox words and resolve
conflicts by the same priorities, so the outcome must be identical to the bit: positions,
ids, states, occupancy. Sums of atomic adds agree to float32 rounding. The GPU itself is
exercised by tests/engine/test_agents_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine import rng, rng_compiled, scatter
from carabm.engine.agents import WEIGHT, AgentStore, KindSpec
from carabm.engine.backend import count_host_reads
from carabm.engine.circulation import BloodCirculation
from carabm.engine.jit_cache import compiled_twin
from carabm.engine.lattice import BLOOD, TISSUE, Lattice, default_layout
from carabm.engine.movement import Movement

VOXEL_UM = 20.0
SHAPE = (6, 10, 24)


def kinds() -> list[KindSpec]:
    return [
        KindSpec("tcell", 8.0, ("tissue", "blood", "cns"), extravasation_per_h=30.0, intravasation_per_h=10.0,
                 bbb_crossing=True, variables={"timer": "float32"}),
        KindSpec("tumour", 1.0, ("tissue",), circulates=False),
        KindSpec("mono", 6.0, ("tissue", "blood", "cns"), chemotaxis_field=1, chemotaxis_sensitivity=0.8,
                 extravasation_per_h=20.0, bbb_crossing=True),
    ]  # fmt: skip


def world(launcher=None, seed: int = 11, wall_closed=None):  # noqa: ANN001, ANN201
    labels = default_layout(SHAPE, VOXEL_UM)
    lattice = Lattice(labels, VOXEL_UM)
    store = AgentStore(kinds(), SHAPE, capacity=64)
    store.launcher = launcher
    for name, home, count in (("tumour", "tissue", 300), ("tcell", "blood", 60), ("mono", "tissue", 80), ("tcell", "tissue", 50)):
        store.place_random(name, count, lattice.flat_indices(home), seed, 0, purpose=f"place:{name}:{home}")
    movement = Movement(store, lattice, dt_min=3.0, seed=seed, wall_closed=wall_closed)
    return lattice, store, movement


def fields_and_integrity(step: int) -> tuple[np.ndarray, np.ndarray]:
    rng_np = np.random.default_rng(step)
    fields = (rng_np.random((2,) + SHAPE) * 4).astype(np.float32)
    integrity = rng_np.random(SHAPE).astype(np.float32)  # breached here and there: BBB crossings happen
    return fields, integrity


def assert_same_world(a: AgentStore, b: AgentStore) -> None:
    assert a.n == b.n and a.next_id == b.next_id
    order_a, order_b = np.argsort(a.id), np.argsort(b.id)
    for column in a.columns:
        np.testing.assert_array_equal(a[column][order_a], b[column][order_b], err_msg=column)
    np.testing.assert_array_equal(a.occupancy >= 0, b.occupancy >= 0)
    b.check()


def test_philox_kernel_matches_the_reference_words(emulator) -> None:
    ids = np.random.default_rng(0).integers(0, 2**40, 3000)
    for seed, step, purpose in [(0, 0, "move"), (2**40 + 7, 2**33 + 5, "divide"), (123, 9, 77)]:
        expected = rng.random_bits(np, seed, step, ids, purpose)
        got = rng_compiled.random_bits_kernel(np, seed, step, ids, purpose, launcher=emulator)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g, e)


def test_moves_match_numpy_to_the_bit_with_chemotaxis_and_bbb(emulator) -> None:
    _, reference, ref_movement = world()
    _, emulated, emu_movement = world(emulator)
    assert_same_world(reference, emulated)
    total = 0
    for step in range(1, 7):
        fields, integrity = fields_and_integrity(step)
        speed = np.where(reference.kind == 0, 1.5, 1.0).astype(np.float32)
        moved_ref = ref_movement.step(step, fields, integrity, speed_scale=speed)
        moved_emu = emu_movement.step(step, fields, integrity, speed_scale=np.where(emulated.kind == 0, 1.5, 1.0))
        assert int(moved_emu) == moved_ref
        total += moved_ref
        assert_same_world(reference, emulated)
    assert total > 200  # the test moved many cells


def test_moves_without_fields_or_integrity_keep_bbb_closed(emulator) -> None:
    lattice, reference, ref_movement = world()
    _, emulated, emu_movement = world(emulator)
    for step in range(1, 5):
        ref_movement.step(step)
        emu_movement.step(step)
        assert_same_world(reference, emulated)
    assert not (lattice.labels.ravel()[emulated.flat_index()] == 2).any()


def _half_the_wall_closed() -> np.ndarray:
    """Tissue voxels that touch blood, on every other y row: the vessel wall closed there."""
    labels = default_layout(SHAPE, VOXEL_UM)
    blood = labels == BLOOD
    near = np.zeros_like(blood)
    for axis in range(3):
        near |= np.roll(blood, 1, axis) | np.roll(blood, -1, axis)
    closed = near & (labels == TISSUE)
    closed[:, 1::2, :] = False
    return closed


@pytest.mark.parametrize("closed", [False, True], ids=["open", "half_closed"])
def test_wall_crossing_matches_numpy_to_the_bit(emulator, closed) -> None:
    wall_closed = _half_the_wall_closed() if closed else None
    _, reference, ref_movement = world(wall_closed=wall_closed)
    _, emulated, emu_movement = world(emulator, wall_closed=wall_closed)
    crossings = np.zeros(2, dtype=int)
    for step in range(1, 7):
        scale = np.where(reference.kind == 2, 2.0, 1.0).astype(np.float32)
        ref = ref_movement.transmigrate(step, extravasation_scale=scale)
        emu = emu_movement.transmigrate(step, extravasation_scale=scale)
        assert (int(emu[0]), int(emu[1])) == ref
        crossings += ref
        assert_same_world(reference, emulated)
    assert crossings.min() > 0  # both directions happened


def test_division_matches_numpy_to_the_bit_and_reads_the_host_once(emulator) -> None:
    _, reference, ref_movement = world()
    _, emulated, emu_movement = world(emulator)
    for step in range(1, 4):
        selection = (reference.kind != 2) & (rng.uniform(np, 5, step, reference.id, "pick") < 0.5)
        parents_ref, daughters_ref = ref_movement.divide(selection, step, "divide")
        with count_host_reads() as reads:
            parents, daughters = emu_movement.divide(selection, step, "divide")
        assert dict(reads) == {"agents: divisions": 1}
        np.testing.assert_array_equal(emulated.id[parents], reference.id[parents_ref])
        np.testing.assert_array_equal(emulated.id[daughters], reference.id[daughters_ref])
        assert daughters_ref.size > 10
        assert_same_world(reference, emulated)


def test_moves_and_wall_crossing_read_nothing_on_the_host(emulator) -> None:
    _, store, movement = world(emulator)
    fields, integrity = fields_and_integrity(1)
    with count_host_reads() as reads:
        movement.step(1, fields, integrity)
        movement.transmigrate(1)
        store.contact_counts(6)
    assert not reads


def test_compaction_by_scan_matches_boolean_compaction(emulator) -> None:
    _, reference, _ = world()
    _, emulated, _ = world(emulator)
    dead = rng.uniform(np, 3, 0, reference.id, "die") < 0.3
    with count_host_reads() as reads:
        assert emulated.remove(dead.copy()) == reference.remove(dead.copy())
    assert dict(reads) == {"agents: removals": 1}
    np.testing.assert_array_equal(emulated.id, reference.id)  # survivors keep their order
    assert_same_world(reference, emulated)
    with count_host_reads() as reads:
        emulated.remove(np.zeros(emulated.n, bool), count=0)
    assert not reads


@pytest.mark.parametrize("connectivity", [6, 26])
def test_contact_counts_match(emulator, connectivity) -> None:
    _, reference, _ = world()
    _, emulated, _ = world(emulator)
    for kind in (None, "tumour", 2):
        np.testing.assert_array_equal(emulated.contact_counts(connectivity, kind), reference.contact_counts(connectivity, kind))


def test_circulation_exchange_matches_numpy_with_one_host_read(emulator) -> None:
    def circulation(store, lattice):  # noqa: ANN001, ANN202
        blood = BloodCirculation(store, lattice, dt_min=3.0, seed=4, scale=1e-4, blood_volume_ml=5000.0)
        blood.infuse("tcell", 2e6, state=1)
        blood.infuse("mono", 1e6)
        return blood

    lattice, reference, _ = world()
    _, emulated, _ = world(emulator)
    ref_blood, emu_blood = circulation(reference, lattice), circulation(emulated, lattice)
    moved = 0
    for step in range(1, 6):
        with count_host_reads() as reads:
            got = emu_blood.exchange(step)
        assert dict(reads) == {"circulation: cells leaving": 1}
        expected = ref_blood.exchange(step)
        assert got == expected
        moved += sum(expected)
        np.testing.assert_array_equal(emu_blood.pool, ref_blood.pool)
        assert_same_world(reference, emulated)
    assert moved > 20
    counts = emu_blood.lattice_blood_counts()
    assert [emu_blood.blood_per_ul(k, counts[k]) for k in (0, 2)] == [ref_blood.blood_count_per_ul(k) for k in (0, 2)]


def test_scatter_and_gather_match_bincount(emulator) -> None:
    rng_np = np.random.default_rng(5)
    voxels = rng_np.integers(0, 50, 2000)
    mask = rng_np.random(2000) < 0.6
    weights = np.where(mask, rng_np.random(2000) * 30, 0.0)
    for launcher in (None, emulator):
        counts_row, weights_row = np.full(50, 0.5, np.float32), np.full(50, 0.5, np.float32)
        scatter.add_counts(counts_row, voxels, mask, 0.125, launcher=launcher)
        scatter.add_weights(weights_row, voxels, weights, 1e-3, launcher=launcher)
        if launcher is None:
            expected = counts_row, weights_row
    np.testing.assert_array_equal(counts_row, expected[0])  # multiples of 1/8: exact either way
    np.testing.assert_allclose(weights_row, expected[1], rtol=2e-6)  # float32 atomic adds vs float64 sums
    assert not np.array_equal(weights_row, np.full(50, 0.5, np.float32))
    fields = rng_np.random((3, 50)).astype(np.float32)
    np.testing.assert_array_equal(scatter.gather(fields, voxels, launcher=emulator), fields[:, voxels])


def test_float64_weight_sums_keep_small_terms_on_the_kernel_path(emulator) -> None:
    # summed agent weights (circulation): ~320 weights of 0.026-0.1 per bin. Float32 adds lose the
    # last bits that NumPy's float64 bincount keeps; the float64 kernel adds in agent order under
    # the emulation, so its sums are bincount's to the bit (on a GPU: to float64 rounding).
    rng_np = np.random.default_rng(9)
    voxels = rng_np.integers(0, 5, 2000)
    weights = np.where(rng_np.random(2000) < 0.8, 0.0260417 * 2.0 ** rng_np.integers(0, 3, 2000), 0.0)
    expected = np.bincount(voxels, weights=weights, minlength=5)
    for launcher in (None, emulator):
        row = np.zeros(5, np.float64)
        scatter.add_weights(row, voxels, weights, 1.0, launcher=launcher)
        np.testing.assert_array_equal(row, expected)
    single = np.zeros(5, np.float32)
    scatter.add_weights(single, voxels, weights, 1.0, launcher=emulator)
    assert not np.array_equal(single.astype(np.float64), expected)  # why the circulation needs the float64 path
    with pytest.raises(TypeError, match="float32 or float64"):
        scatter.add_weights(np.zeros(5, np.int32), voxels, weights, 1.0, launcher=emulator)


def test_free_voxel_choice_matches_with_a_known_free_count(emulator) -> None:
    lattice, reference, _ = world()
    _, emulated, _ = world(emulator)
    from carabm.engine.agents import choose_free_voxels  # noqa: PLC0415

    blood = lattice.flat_indices(BLOOD)
    n_free = int((reference.occupancy.ravel()[blood] < 0).sum())
    expected = choose_free_voxels(reference, blood, 25, 3, 7, "place")
    got = choose_free_voxels(emulated, blood, 25, 3, 7, "place", n_free=n_free)
    np.testing.assert_array_equal(got, expected)
    assert (lattice.labels.ravel()[got] == BLOOD).all() and TISSUE != BLOOD


def test_sorting_by_voxel_changes_memory_order_not_results(emulator) -> None:
    _, reference, ref_movement = world()
    _, sorted_store, sorted_movement = world(emulator)
    for step in range(1, 6):
        if step % 2:
            sorted_store.sort_by_voxel()
            assert (np.diff(sorted_store.padded_flat()) > 0).all()
        fields, integrity = fields_and_integrity(step)
        ref_movement.step(step, fields, integrity)
        sorted_movement.step(step, fields, integrity)
        ref_movement.divide(reference.kind == 0, step, "divide")
        sorted_movement.divide(sorted_store.kind == 0, step, "divide")
        assert_same_world(reference, sorted_store)


def test_the_whole_model_with_emulated_engine_kernels_matches_numpy(emulator, monkeypatch) -> None:
    # The real model on NumPy arrays, with the engine's kernel paths (moves, wall crossing,
    # division, compaction, circulation, locality sorting, secretion/uptake scatters, sensing)
    # run by the emulated CUDA sources: the same random words and winners, and one agent per
    # voxel makes each scattered sum a single term, so the same world to the bit after half a day.
    import functools  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from carabm.io.config import load_config  # noqa: PLC0415
    from carabm.simulation import Simulation  # noqa: PLC0415

    config = load_config(Path(__file__).parents[2] / "configs" / "quickstart.yaml", ["run.duration_h=24"])
    reference, emulated = Simulation(config, "numpy"), Simulation(config, "numpy")
    emulated.model.store.launcher = emulator
    emulator.launches.clear()
    reads_per_step = []
    kernel_scatter = {name: functools.partial(getattr(scatter, name), launcher=emulator) for name in ("add_counts", "add_weights", "gather")}
    for _ in range(120):
        reference.step()
        with count_host_reads() as reads, monkeypatch.context() as patch:
            for name, function in kernel_scatter.items():
                patch.setattr(scatter, name, function)
            emulated.step()
        reads_per_step.append(reads)
        assert emulated.readouts() == reference.readouts()
    assert_same_world(reference.model.store, emulated.model.store)
    row = reference.readouts()
    assert row["counts/cart"] > 0 and row["activated/cart"] > 0  # CAR-T cells arrived and met B cells
    assert set(emulator.launches) >= {"move_propose", "wall_propose", "divide_propose", "scatter_counts", "scatter_weights", "gather_fields"}
    engine_reasons = {"agents: divisions", "agents: removals", "circulation: cells leaving"}
    seen = set().union(*reads_per_step)
    assert "circulation: cells leaving" in seen and "agents: divisions" in seen
    for reads in reads_per_step:  # one read per engine event, a handful per step
        assert sum(n for reason, n in reads.items() if reason in engine_reasons) <= 6


def test_free_voxel_choice_without_a_free_count_reads_once_by_the_documented_read(emulator) -> None:
    lattice, reference, _ = world()
    _, emulated, _ = world(emulator)
    from carabm.engine.agents import choose_free_voxels  # noqa: PLC0415

    blood = lattice.flat_indices(BLOOD)
    with count_host_reads() as reads:
        got = choose_free_voxels(emulated, blood, 25, 3, 7, "place")
    assert dict(reads) == {"agents: free voxels": 1}  # not boolean indexing, which syncs uncounted
    np.testing.assert_array_equal(got, choose_free_voxels(reference, blood, 25, 3, 7, "place"))


def test_each_operation_is_two_launches_and_leaves_the_claim_grid_zeroed(emulator) -> None:
    _, store, movement = world(emulator)
    fields, integrity = fields_and_integrity(1)
    for operation, expected in (
        (lambda: movement.step(1, fields, integrity), ["move_propose", "apply_moves"]),
        (lambda: movement.transmigrate(1), ["wall_propose", "apply_moves"]),
        (lambda: movement.divide(store.kind == 0, 1, "divide"), ["divide_propose", "resolve_claims"]),
    ):
        emulator.launches.clear()
        operation()
        assert emulator.launches == expected
        assert not movement._scratch.any()


def test_circulation_counts_only_the_leaving_cells(emulator, monkeypatch) -> None:
    lattice, store, _ = world(emulator)
    blood = BloodCirculation(store, lattice, dt_min=3.0, seed=4, scale=1e-4, blood_volume_ml=5000.0)
    selected = []
    add_counts = scatter.add_counts
    monkeypatch.setattr(scatter, "add_counts", lambda row, voxels, mask, *a, **k: selected.append(
        store.n if mask is None else int(np.count_nonzero(mask))) or add_counts(row, voxels, mask, *a, **k))
    left, _ = blood.exchange(1)
    assert left > 0 and selected == [left]  # one atomic add per leaving cell, none for the others


def test_scratch_left_unfilled_is_never_read_where_unwritten(emulator, monkeypatch) -> None:
    # the proposal kernels' outputs are xp.empty: poison them, and the world must still match NumPy
    from carabm.engine import movement_kernels  # noqa: PLC0415

    def poisoned(xp, n):  # noqa: ANN001, ANN202
        garbage = np.random.default_rng(n)
        return (garbage.integers(0, 2000, n), np.zeros(n, dtype=np.uint64),  # 0: an unwritten request would take any free voxel
                garbage.integers(0, 6, n).astype(np.int32))  # fmt: skip

    monkeypatch.setattr(movement_kernels, "_scratch", poisoned)
    _, reference, ref_movement = world()
    _, emulated, emu_movement = world(emulator)
    for step in range(1, 4):
        fields, integrity = fields_and_integrity(step)
        assert int(emu_movement.step(step, fields, integrity)) == ref_movement.step(step, fields, integrity)
        assert tuple(int(x) for x in emu_movement.transmigrate(step)) == ref_movement.transmigrate(step)
        emu_movement.divide(emulated.kind == 0, step, "divide")
        ref_movement.divide(reference.kind == 0, step, "divide")
        assert_same_world(reference, emulated)


def test_weighted_circulation_matches_numpy_with_one_host_read(emulator) -> None:
    """Super-individuals: the kernel path carries the leaving weights in the same one host read."""

    def weighted_world(launcher=None):  # noqa: ANN001, ANN202
        specs = kinds()
        specs[0] = KindSpec("tcell", 8.0, ("tissue", "blood", "cns"), extravasation_per_h=30.0, variables={"timer": "float32", WEIGHT: "float32"})
        labels = default_layout(SHAPE, VOXEL_UM)
        lattice = Lattice(labels, VOXEL_UM)
        store = AgentStore(specs, SHAPE, capacity=64)
        store.launcher = launcher
        for name, count in (("tcell", 60), ("mono", 40)):
            slots = store.place_random(name, count, lattice.flat_indices("blood"), 11, 0, purpose=f"place:{name}")
            if name == "tcell":
                store[WEIGHT][slots] = np.linspace(0.125, 2.0, count).astype(np.float32)
        # a pool of about the lattice's blood volume: cells go both ways
        blood = BloodCirculation(store, lattice, dt_min=3.0, seed=4, scale=1e-9, blood_volume_ml=5000.0)
        blood.infuse("tcell", 2e10, state=1, min_agents=50)  # 20 cells as 50 agents of weight 0.4
        blood.infuse("mono", 4e10)
        return store, blood

    reference, ref_blood = weighted_world()
    emulated, emu_blood = weighted_world(emulator)
    cells = ref_blood.pool_cells("tcell") + float(reference.weights()[reference.kind == 0].sum())
    moved = 0
    for step in range(1, 6):
        with count_host_reads() as reads:
            got = emu_blood.exchange(step)
        assert dict(reads) == {"circulation: cells leaving": 1}
        assert got == ref_blood.exchange(step)
        moved += sum(got)
        np.testing.assert_array_equal(emu_blood.pool, ref_blood.pool)
        np.testing.assert_allclose(emu_blood.pool_weight, ref_blood.pool_weight, rtol=1e-6)  # float32 atomic sums
        np.testing.assert_array_equal(emulated.id, reference.id)
        np.testing.assert_allclose(emulated[WEIGHT], reference[WEIGHT], rtol=1e-6)
    assert moved > 50
    # exchange moves cells between pool and lattice blood but keeps their number (weights)
    after = ref_blood.pool_cells("tcell") + float(reference.weights()[reference.kind == 0].sum())
    assert after == pytest.approx(cells, rel=1e-6)  # float32 weights on the lattice
    assert np.all(np.asarray(reference.weights()[reference.kind == 2]) == 1.0)  # unweighted kinds: one cell per agent


def test_mean_over_voxels_gives_the_gathers_mean_to_the_bit() -> None:
    # the compiled CPU mean_at against the NumPy expression it replaces (column-major gather, summed in voxel order)
    rng_np = np.random.default_rng(3)
    for k, n_voxels, n in ((9, 11520, 3744), (2, 300, 299), (5, 20000, 9000), (1, 500, 200)):
        fields = (rng_np.random((k, n_voxels)) * 10 ** rng_np.uniform(-2, 4, (k, 1))).astype(np.float32)
        voxels = np.sort(rng_np.choice(n_voxels, n, replace=False))
        expected = fields[:, voxels].mean(axis=1)
        got = scatter.mean_at(fields, voxels)
        assert got.dtype == expected.dtype == np.float32 and np.array_equal(got, expected)
    assert compiled_twin("_scatter_numba", "mean_at") is not None  # the compiled path ran (numba is an install requirement)


def test_add_weights_gives_bincounts_sum_to_the_bit() -> None:
    # the compiled CPU add_weights against the NumPy expression it replaces: float64 bincount in agent
    # order, times the scale, rounded once to float32, added to the row (repeated voxels, float32 and
    # float64 weights, zeros, and a row that already holds values)
    rng_np = np.random.default_rng(5)
    for n_voxels, n, wdtype in ((11520, 3744, np.float32), (300, 2000, np.float64), (20000, 9, np.float64)):
        row = (rng_np.random(n_voxels) * 10 ** rng_np.uniform(-3, 3, n_voxels)).astype(np.float32)
        row[::7] = 0.0
        voxels = rng_np.integers(0, n_voxels, n)  # repeats: several agents per voxel, in no order
        weights = (rng_np.random(n) * 10 ** rng_np.uniform(-6, 6, n)).astype(wdtype)
        weights[::5] = 0.0
        scale = float(rng_np.uniform(1e-4, 1e3))
        expected = row + (np.bincount(voxels, weights=weights, minlength=n_voxels) * scale).astype(np.float32)
        scatter.add_weights(row, voxels, weights, scale)
        assert row.dtype == np.float32 and np.array_equal(row, expected)
    assert compiled_twin("_scatter_numba", "add_weights") is not None


def test_carried_variables_match_numpy_in_the_same_host_read(emulator) -> None:
    """Variables carried through the pool (a CAR-T cell's divisions) ride in the one host read of the kernel path."""

    def carried_world(launcher=None):  # noqa: ANN001, ANN202
        specs = kinds()
        specs[0] = KindSpec("tcell", 8.0, ("tissue", "blood", "cns"), extravasation_per_h=30.0,
                            variables={"gen": "int32", WEIGHT: "float32"})  # fmt: skip
        lattice = Lattice(default_layout(SHAPE, VOXEL_UM), VOXEL_UM)
        store = AgentStore(specs, SHAPE, capacity=64)
        store.launcher = launcher
        slots = store.place_random("tcell", 60, lattice.flat_indices("blood"), 11, 0, purpose="place:tcell")
        store["gen"][slots] = np.arange(60) % 9
        blood = BloodCirculation(store, lattice, dt_min=3.0, seed=4, scale=1e-9, blood_volume_ml=5000.0)
        blood.carry("tcell", ("gen",))
        blood.infuse("tcell", 2e10, state=1, min_agents=50)
        return store, blood

    reference, ref_blood = carried_world()
    emulated, emu_blood = carried_world(emulator)
    for step in range(1, 6):
        with count_host_reads() as reads:
            got = emu_blood.exchange(step)
        assert dict(reads) == {"circulation: cells leaving": 1}
        assert got == ref_blood.exchange(step)
        np.testing.assert_array_equal(emu_blood.pool_means["gen"], ref_blood.pool_means["gen"])  # integer sums: exact
        np.testing.assert_array_equal(emulated["gen"], reference["gen"])
    assert ref_blood.pool_means["gen"][0].max() > 0
