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
