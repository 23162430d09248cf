"""Systemic blood pool: mass conservation, serum half-life, equilibration (analytic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carabm.engine.blood_pool import BloodPool
from carabm.engine.fields import FieldSolver

DTYPES = [np.float32, np.float64]


def tol(dtype: type, f64: float, f32: float) -> float:
    """Tolerance per precision."""
    return f64 if dtype == np.float64 else f32


@pytest.mark.parametrize("dtype", DTYPES)
def test_serum_half_life_is_honoured(dtype) -> None:
    half_life_s, dt, steps = 3600.0, 60.0, 60
    solver = FieldSolver((4, 4, 4), 20.0, [100.0], [0.0], dtype=dtype, cpu_impl="numpy")
    pool = BloodPool(solver, np.ones((4, 4, 4), bool), 5000.0, 1e-7, [half_life_s], serum_pg_ml=[100.0])
    fields = solver.zeros() + dtype(100.0)  # lattice blood in equilibrium with the pool
    for _ in range(steps):
        pool.step(fields, dt)
    k = math.log(2) / half_life_s
    exact_scheme = 100.0 * (1 + k * dt) ** -steps  # backward Euler's factor per step
    assert pool.serum_pg_ml[0] == pytest.approx(exact_scheme, rel=tol(dtype, 1e-10, 1e-5))
    # and the continuous half-life within the scheme's first-order error (k dt / 2 ~ 0.6 %)
    assert pool.serum_pg_ml[0] == pytest.approx(50.0, rel=k * dt)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exchange_conserves_mass_and_equilibrates(dtype) -> None:
    rng = np.random.default_rng(11)
    shape = (6, 7, 8)
    blood = rng.random(shape) < 0.3
    solver = FieldSolver(shape, 20.0, [200.0, 0.0], [0.0, 0.0], dtype=dtype, cpu_impl="numpy")
    pool = BloodPool(solver, blood, 5000.0, 2e-7, [math.inf, math.inf], serum_pg_ml=[50.0, 80.0])
    fields = rng.random(solver.field_shape).astype(dtype)
    fields[1] = 0.0
    m0 = pool.total_mass_pg(fields)
    for _ in range(50):
        pool.step(fields, 60.0)
    np.testing.assert_allclose(pool.total_mass_pg(fields), m0, rtol=tol(dtype, 1e-12, 1e-5))
    # field 1 does not diffuse: its blood voxels and the pool share the pool's mass evenly
    v = solver.voxel_um**3 * 1e-12
    expected = pool.pool_volume_ml * 80.0 / (pool.pool_volume_ml + v * blood.sum())
    assert pool.serum_pg_ml[1] == pytest.approx(expected, rel=tol(dtype, 1e-6, 1e-4))
    np.testing.assert_allclose(fields[1][blood], expected, rtol=tol(dtype, 1e-6, 1e-4))
    assert np.all(fields[1][~blood] == 0)


def test_pool_sources_and_clearance_balance_at_steady_state() -> None:
    # pool only (no blood voxels): dC/dt = P - k C  ->  C* = P / k
    solver = FieldSolver((2, 2, 2), 20.0, [10.0], [0.0], dtype=np.float64, cpu_impl="numpy")
    pool = BloodPool(solver, np.zeros((2, 2, 2), bool), 5000.0, 1e-6, [600.0])
    fields = solver.zeros()
    for _ in range(400):
        pool.step(fields, 60.0, pool_sources_pg_ml_s=[2.0])
    assert pool.serum_pg_ml[0] == pytest.approx(2.0 * 600.0 / math.log(2), rel=1e-9)


def test_bad_inputs_say_what_is_wrong() -> None:
    solver = FieldSolver((2, 2, 2), 20.0, [10.0], [0.0], cpu_impl="numpy")
    with pytest.raises(ValueError, match="blood_mask: expected shape"):
        BloodPool(solver, np.zeros((2, 2), bool), 5000.0, 1e-6, [600.0])
    with pytest.raises(ValueError, match="half_life_s: one value > 0 per field"):
        BloodPool(solver, np.zeros((2, 2, 2), bool), 5000.0, 1e-6, [0.0])
    with pytest.raises(ValueError, match="must be > 0"):
        BloodPool(solver, np.zeros((2, 2, 2), bool), 5000.0, 0.0, [600.0])


def _serum_from_a_tissue_source(dt_s: float, hours: float = 6.0, capillaries: bool = True) -> float:
    """Serum level after ``hours`` of a constant source in every tissue voxel of a slab beside a vessel (quickstart-like numbers:
    D 100 µm²/s, 20-µm voxels, blood voxels exchanged with the pool at 1/min, a 15-min tissue half-life).

    ``capillaries``: carabm's model (the vessel closed to diffusion, the tissue trading with serum through a capillary bed at
    P S/V = 2e-5/s); else the vessel's voxels are open, ordinary voxels of the diffusion solve (free coupling).
    """
    shape = (4, 8, 12)
    blood = np.zeros(shape, bool)
    blood[:, :, :2] = True  # a vessel along two faces of x = 0 and 1
    conductance = np.where(blood, 0.0, 1.0)[None] if capillaries else None
    solver = FieldSolver(shape, 20.0, [100.0], [math.log(2) / 900.0], dtype=np.float64, cpu_impl="numpy", conductance=conductance)
    bed = {"capillary_mask": ~blood, "capillary_rate_per_s": [2e-5]} if capillaries else {}
    pool = BloodPool(solver, blood, 5000.0, 1e-7, [2700.0], **bed)
    fields = solver.zeros()
    source = solver.zeros()
    source[0][~blood] = 1e-3  # pg/mL/s
    for _ in range(int(round(hours * 3600.0 / dt_s))):
        pool.step(fields, dt_s, source)
    return float(pool.serum_pg_ml[0])


def test_the_serum_a_tissue_source_makes_does_not_depend_on_the_step() -> None:
    levels = {dt: _serum_from_a_tissue_source(dt) for dt in (720.0, 360.0, 180.0, 22.5)}  # 12, 6 (the quickstart's), 3, 0.375 min
    assert levels[360.0] > 0
    for dt in (720.0, 360.0, 180.0):
        assert levels[dt] / levels[22.5] == pytest.approx(1.0, abs=0.03), levels


def test_free_diffusion_into_open_blood_voxels_does_not_converge_in_the_step() -> None:
    """Why carabm closes the vessel and spreads the exchange over a capillary bed: with the blood voxels open to diffusion, the
    tissue's cytokine reaches serum only at each step's exchange, about one voxel-load per step whatever the step (1.5x from 12-
    to 6-min steps, 1.4x from 6 to 3 in this small slab; 1.9x on the quickstart's lattice; docs/model.md, "Time step")."""
    levels = {dt: _serum_from_a_tissue_source(dt, capillaries=False) for dt in (720.0, 360.0, 180.0, 22.5)}
    assert 1.3 < levels[360.0] / levels[720.0] < 2.05 and 1.25 < levels[180.0] / levels[360.0] < 2.05, levels
    assert levels[22.5] > 1.8 * levels[360.0], levels  # the 6-min step's serum is less than half the fine-step one


def _capillary_pool(dtype: type = np.float64, rate: float = 1e-3):  # noqa: ANN202
    shape = (3, 4, 5)
    blood = np.zeros(shape, bool)
    blood[:, :, 0] = True
    solver = FieldSolver(shape, 20.0, [100.0, 0.0], [0.0, 0.0], dtype=dtype, cpu_impl="numpy", conductance=np.where(blood, 0.0, 1.0)[None])
    pool = BloodPool(solver, blood, 5000.0, 1e-6, [math.inf, math.inf], serum_pg_ml=[10.0, 0.0],
                     capillary_mask=~blood, capillary_rate_per_s=[rate, rate / 2])  # fmt: skip
    return solver, pool, blood


@pytest.mark.parametrize("dtype", DTYPES)
def test_capillary_exchange_conserves_mass_and_brings_tissue_to_the_serum_level(dtype) -> None:
    solver, pool, blood = _capillary_pool(dtype)
    fields = solver.zeros()
    fields[1][~blood] = dtype(50.0)  # field 1: tissue above serum, field 0: serum above tissue
    m0 = pool.total_mass_pg(fields)
    for _ in range(1000):  # k t = 60 and 30
        pool.step(fields, 60.0)
    np.testing.assert_allclose(pool.total_mass_pg(fields), m0, rtol=tol(dtype, 1e-12, 1e-5))
    for k in range(2):  # no decay, no clearance: tissue, blood voxels and pool end at one level
        np.testing.assert_allclose(fields[k], pool.serum_pg_ml[k], rtol=tol(dtype, 1e-6, 1e-4))
    assert 0 < pool.serum_pg_ml[0] < 10.0 and 0 < pool.serum_pg_ml[1] < 50.0


def test_capillary_exchange_moves_k_dt_of_the_difference_and_never_passes_the_serum() -> None:
    solver, pool, blood = _capillary_pool()
    fields = solver.zeros()
    fields[0][~blood] = 30.0
    pool.capillary_exchange(fields, 100.0)  # k dt = 0.1 of field 0
    np.testing.assert_allclose(fields[0][~blood], 30.0 - 0.1 * (30.0 - 10.0))
    assert np.all(fields[0][blood] == 0)  # blood voxels are not part of the bed
    fields[0][~blood] = 30.0
    serum = pool.serum_pg_ml[0]
    pool.capillary_exchange(fields, 1e5)  # k dt far above 1: the whole difference, no overshoot
    np.testing.assert_allclose(fields[0][~blood], serum)


def test_capillary_exchange_under_the_kernel_emulation_matches_numpy(emulator) -> None:
    solver, pool, blood = _capillary_pool(np.float32)
    rng = np.random.default_rng(5)
    start = (rng.random(solver.field_shape) * 40).astype(np.float32)
    expected, got = start.copy(), start.copy()
    other = _capillary_pool(np.float32)[1]
    pool.capillary_exchange(expected, 60.0)
    other.capillary_exchange(got, 60.0, launch=emulator)
    np.testing.assert_array_equal(got, expected)  # the same float32 operations on the voxels
    np.testing.assert_allclose(other.serum_pg_ml, pool.serum_pg_ml, rtol=1e-13)  # float64 sums in another order
    assert not np.array_equal(expected, start)


def test_capillary_inputs_say_what_is_wrong() -> None:
    solver = FieldSolver((2, 2, 2), 20.0, [10.0], [0.0], cpu_impl="numpy")
    mask = np.zeros((2, 2, 2), bool)
    with pytest.raises(ValueError, match="capillary_rate_per_s: given without capillary_mask"):
        BloodPool(solver, mask, 5000.0, 1e-6, [600.0], capillary_rate_per_s=[1e-5])
    with pytest.raises(ValueError, match="capillary_mask: expected shape"):
        BloodPool(solver, mask, 5000.0, 1e-6, [600.0], capillary_mask=np.ones((2, 2), bool), capillary_rate_per_s=[1e-5])
    with pytest.raises(ValueError, match="capillary_rate_per_s: one finite value >= 0 per field"):
        BloodPool(solver, mask, 5000.0, 1e-6, [600.0], capillary_mask=~mask)
    with pytest.raises(ValueError, match="capillary_rate_per_s: one finite value >= 0 per field"):
        BloodPool(solver, mask, 5000.0, 1e-6, [600.0], capillary_mask=~mask, capillary_rate_per_s=[-1.0])


def _weighted_pool(dtype: type = np.float64, weight_of_brain: float = 7.5, half_life_s: float = math.inf):  # noqa: ANN202
    """Blood on two faces of a small lattice: x = 0 counts once, x = 4 (a "brain vessel") ``weight_of_brain`` times."""
    shape = (3, 4, 5)
    blood = np.zeros(shape, bool)
    blood[:, :, 0] = blood[:, :, 4] = True
    weight = np.ones(shape)
    weight[:, :, 4] = weight_of_brain
    solver = FieldSolver(shape, 20.0, [100.0, 0.0], [0.0, 0.0], dtype=dtype, cpu_impl="numpy")
    pool = BloodPool(solver, blood, 5000.0, 1e-6, [half_life_s, half_life_s], serum_pg_ml=[10.0, 0.0], blood_weight=weight)
    return solver, pool, blood, weight


def _weighted_mass(pool, fields, weight):  # noqa: ANN001, ANN202
    """Mass per field with each voxel counted ``weight`` times [pg], by hand (and as ``total_mass_pg`` has it)."""
    flat = np.asarray(fields, np.float64).reshape(fields.shape[0], -1)
    mass = (flat * weight.ravel()[None, :]).sum(axis=1) * pool.voxel_volume_ml + pool.serum_pg_ml * pool.pool_volume_ml
    np.testing.assert_allclose(pool.total_mass_pg(fields), mass, rtol=1e-12)
    return mass


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_blood_voxels_count_their_weight_in_the_pool(dtype) -> None:
    solver, pool, blood, weight = _weighted_pool(dtype)
    assert [w for w, _ in pool.blood_groups] == [1.0, 7.5] and pool.blood_weight_sum == 12 + 12 * 7.5
    fields = solver.zeros()
    fields[1][:, :, 4] = dtype(40.0)  # only the weighted voxels hold field 1
    fields[0][:, :, 0] = dtype(25.0)
    m0 = _weighted_mass(pool, fields, weight)
    for _ in range(30):
        pool.exchange(fields, 60.0)
    np.testing.assert_allclose(_weighted_mass(pool, fields, weight), m0, rtol=tol(dtype, 1e-12, 1e-6))
    # and everything meets at the weighted mean: sum(w v c) + V C over sum(w v) + V
    v, volume = pool.voxel_volume_ml, pool.pool_volume_ml
    expected = m0 / (pool.blood_weight_sum * v + volume)
    for _ in range(2000):
        pool.exchange(fields, 60.0)
    np.testing.assert_allclose(pool.serum_pg_ml, expected, rtol=tol(dtype, 1e-9, 1e-5))
    at_blood = np.asarray(fields)[:, blood]
    np.testing.assert_allclose(at_blood, np.broadcast_to(expected[:, None], at_blood.shape), rtol=tol(dtype, 1e-9, 1e-5))


def test_the_weighted_exchange_is_the_backward_euler_solve_of_the_weighted_system() -> None:
    """One step against a dense solve of c' = c + a (C' - c') - b c', V C' (1 + b) = V C + v a sum(w (c' - C'))."""
    solver, pool, blood, weight = _weighted_pool(np.float64, weight_of_brain=3.0, half_life_s=1800.0)
    rng = np.random.default_rng(2)
    fields = solver.zeros()
    fields[:, blood] = rng.random((2, int(blood.sum()))) * 50
    before = fields.copy()
    serum0 = pool.serum_pg_ml.copy()
    dt = 120.0
    pool.exchange(fields, dt)
    a, b = pool.exchange_per_s * dt, pool.clearance_per_s * dt
    v, volume = pool.voxel_volume_ml, pool.pool_volume_ml
    w = weight[blood]
    n = w.size
    for k in range(2):
        system = np.zeros((n + 1, n + 1))
        rhs = np.zeros(n + 1)
        system[:n, :n] = np.eye(n) * (1 + a + b[k])
        system[:n, n] = -a
        rhs[:n] = before[k][blood]
        system[n, :n] = -v * a * w
        system[n, n] = volume * (1 + b[k]) + v * a * w.sum()
        rhs[n] = volume * serum0[k]
        solution = np.linalg.solve(system, rhs)
        np.testing.assert_allclose(fields[k][blood], solution[:n], rtol=1e-12)
        assert pool.serum_pg_ml[k] == pytest.approx(solution[n], rel=1e-12)


def test_weighted_exchange_under_the_kernel_emulation_matches_numpy(emulator) -> None:
    solver, pool, blood, _ = _weighted_pool(np.float32)
    other = _weighted_pool(np.float32)[1]
    rng = np.random.default_rng(8)
    start = (rng.random(solver.field_shape) * 40).astype(np.float32)
    expected, got = start.copy(), start.copy()
    emulator.launches.clear()
    pool.exchange(expected, 60.0)
    other.exchange(got, 60.0, launch=emulator)
    assert emulator.launches.count("blood_partial_sums") == 2  # one sum per weight
    np.testing.assert_allclose(other.serum_pg_ml, pool.serum_pg_ml, rtol=1e-13)  # float64 sums in another order
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(expected, start)


def test_blood_weight_inputs_say_what_is_wrong() -> None:
    solver = FieldSolver((2, 2, 2), 20.0, [10.0], [0.0], cpu_impl="numpy")
    mask = np.ones((2, 2, 2), bool)
    with pytest.raises(ValueError, match="blood_weight: expected shape"):
        BloodPool(solver, mask, 5000.0, 1e-6, [600.0], blood_weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match="blood_weight: must be finite and > 0 at every blood voxel"):
        BloodPool(solver, mask, 5000.0, 1e-6, [600.0], blood_weight=np.zeros((2, 2, 2)))
    nine = FieldSolver((1, 3, 3), 20.0, [10.0], [0.0], cpu_impl="numpy")
    with pytest.raises(ValueError, match="blood_weight: at most 8 distinct values"):
        BloodPool(nine, np.ones((1, 3, 3), bool), 5000.0, 1e-6, [600.0], blood_weight=np.arange(1.0, 10.0).reshape(1, 3, 3))
