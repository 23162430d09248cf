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


def _serum_from_a_tissue_source(dt_s: float, hours: float = 6.0) -> float:
    """Serum level after ``hours`` of a constant source in every tissue voxel of a slab beside a vessel (quickstart-like numbers:
    D 100 µm²/s, 20-µm voxels, blood voxels exchanged with the pool at 1/min, a 15-min tissue half-life)."""
    shape = (4, 8, 12)
    blood = np.zeros(shape, bool)
    blood[:, :, :2] = True  # a vessel along two faces of x = 0 and 1
    solver = FieldSolver(shape, 20.0, [100.0], [math.log(2) / 900.0], dtype=np.float64, cpu_impl="numpy")
    pool = BloodPool(solver, blood, 5000.0, 1e-7, [2700.0])
    fields = solver.zeros()
    source = solver.zeros()
    source[0][~blood] = 1e-3  # pg/mL/s
    for _ in range(int(round(hours * 3600.0 / dt_s))):
        pool.step(fields, dt_s, source)
    return float(pool.serum_pg_ml[0])


@pytest.mark.xfail(strict=True, reason="known gap: the tissue's cytokine reaches serum through the blood voxels only at each step's "
                                       "exchange, after the diffusion solve has run without the flushing of those voxels, so the "
                                       "transfer is about one voxel-load per step, whatever the step: halving the step nearly doubles "
                                       "the serum level (docs/model.md, section 8, 'Time step')")  # fmt: skip
def test_the_serum_a_tissue_source_makes_does_not_depend_on_the_step() -> None:
    coarse, fine = _serum_from_a_tissue_source(360.0), _serum_from_a_tissue_source(180.0)  # the quickstart's 6 min, and 3
    assert coarse > 0
    assert fine / coarse == pytest.approx(1.0, abs=0.1), f"serum {coarse:.3g} pg/mL at 6-min steps, {fine:.3g} at 3-min steps"


def test_the_known_gap_of_the_exchange_is_what_the_xfail_says() -> None:
    """The measured size of the gap above (so that the xfail cannot hide another failure): 1.5x from 12- to 6-min steps, 1.4x from
    6 to 3 in this small slab (1.9x on the quickstart's lattice), shrinking towards 1 only at steps well below a minute."""
    levels = {dt: _serum_from_a_tissue_source(dt) for dt in (720.0, 360.0, 180.0, 22.5)}
    assert 1.3 < levels[360.0] / levels[720.0] < 2.05 and 1.25 < levels[180.0] / levels[360.0] < 2.05, levels
    assert levels[22.5] > 1.8 * levels[360.0], levels  # the 6-min step's serum is less than half the fine-step one
