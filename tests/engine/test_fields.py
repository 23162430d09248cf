"""Field solver: analytic solutions, invariants, parity (NumPy vs numba) and a SciPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine._fields_reference import reference_lod_step
from carabm.engine.fields import FieldSolver, numba_available

DTYPES = [np.float32, np.float64]
IMPLS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="numba missing"))]


def rtol_for(dtype: type, f64: float, f32: float) -> float:
    """Tolerance per precision (float32 figures allow ~100 ulp of accumulated rounding)."""
    return f64 if dtype == np.float64 else f32


def solver(shape, D, decay, dtype, impl, conductance=None, voxel_um=10.0) -> FieldSolver:  # noqa: ANN001
    return FieldSolver(shape, voxel_um, D, decay, conductance=conductance, dtype=dtype, cpu_impl=impl)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_point_release_variance_grows_2Dt_per_axis(dtype, impl) -> None:
    # For backward Euler with the 3-point Laplacian on an unbounded grid the second moment
    # grows by exactly 2*D*dt per step (sum x^2 (c_{i+1}-2c_i+c_{i-1}) = 2 dx^2 sum c), so the
    # only error is truncation by the walls. Each step's kernel decays like r^|i| with
    # r + 1/r = 2 + dx^2/(D dt) (r = 0.38 here); after 5 steps the mass 40 voxels out is
    # ~ C(44, 4) r^40 ~ 2e-12, so the variance is exact to ~1e-10 relative in float64.
    n, dx, D, dt, steps = 81, 10.0, 10.0, 10.0, 5
    s = solver((n, n, n), [D], [0.0], dtype, impl, voxel_um=dx)
    c = s.zeros()
    c[0, n // 2, n // 2, n // 2] = 1.0
    for _ in range(steps):
        s.step(c, dt)
    c64 = c[0].astype(np.float64)
    x = (np.arange(n) - n // 2) * dx
    mass = c64.sum()
    assert mass == pytest.approx(1.0, rel=rtol_for(dtype, 1e-12, 1e-5))
    for axis in range(3):
        marginal = c64.sum(axis=tuple(a for a in range(3) if a != axis))
        variance = (marginal * x**2).sum() / mass
        assert variance == pytest.approx(2 * D * dt * steps, rel=rtol_for(dtype, 1e-9, 1e-4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_pure_decay_follows_scheme_factor(dtype, impl) -> None:
    rng = np.random.default_rng(1)
    k, dt, steps = 1e-3, 60.0, 30
    s = solver((5, 6, 7), [50.0, 0.0], [k, k], dtype, impl, conductance=rng.random((5, 6, 7)))
    c = rng.random(s.field_shape).astype(dtype)
    c[1] = 2.5  # a uniform field decays voxel by voxel
    m0 = s.total(c)
    for _ in range(steps):
        s.step(c, dt)
    factor = (1 + k * dt) ** -steps
    np.testing.assert_allclose(s.total(c), m0 * factor, rtol=rtol_for(dtype, 1e-12, 1e-5))
    np.testing.assert_allclose(c[1], 2.5 * factor, rtol=rtol_for(dtype, 1e-12, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_steady_state_source_decay_1d_matches_closed_form(dtype, impl) -> None:
    # Fixed point of the split step: lam c - D' L c = S with D' = D (1 + lam dt) (the
    # splitting's O(dt) effect). Source S0 in voxel 0, no flux at both ends: the discrete
    # solution is A (r^i + r^(2n-1-i)), r + 1/r = 2 + lam dx^2 / D', A from row 0.
    n, dx, D, lam, dt, S0 = 60, 10.0, 100.0, 1e-2, 600.0, 5.0
    s = solver((1, 1, n), [D], [lam], dtype, impl, voxel_um=dx)
    c = s.zeros()
    src = s.zeros()
    src[0, 0, 0, 0] = S0
    for _ in range(60):  # contraction 1/(1 + lam dt) = 1/7 per step
        s.step(c, dt, sources=src)
    d_eff = D * (1 + lam * dt) / dx**2
    beta = 2 + lam / d_eff
    r = (beta - np.sqrt(beta**2 - 4)) / 2
    i = np.arange(n)
    shape = r**i + r ** (2 * n - 1 - i)
    amplitude = S0 / (lam * shape[0] - d_eff * (shape[1] - shape[0]))
    np.testing.assert_allclose(c[0, 0, 0], amplitude * shape, rtol=rtol_for(dtype, 1e-10, 1e-4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_mass_conserved_without_decay(dtype, impl) -> None:
    rng = np.random.default_rng(2)
    s = solver((8, 9, 10), [500.0, 20.0], [0.0, 0.0], dtype, impl, conductance=rng.random((8, 9, 10)))
    c = rng.random(s.field_shape).astype(dtype)
    m0 = s.total(c)
    for _ in range(10):
        s.step(c, 300.0)
    # each sweep rounds every value a few times: allow ~50 ulp per step in float32
    np.testing.assert_allclose(s.total(c), m0, rtol=rtol_for(dtype, 1e-12, 50 * 10 * 6e-8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_zero_conductance_plane_blocks_all_transport(dtype, impl) -> None:
    shape = (6, 7, 12)
    g = np.ones(shape)
    g[:, :, 5] = 0.0
    s = solver(shape, [1000.0], [0.0], dtype, impl, conductance=g)
    c = s.zeros()
    c[0, :, :, :5] = 1.0
    c[0, 2, 3, 5] = 4.0  # the blocked voxel keeps what it holds
    for _ in range(20):
        s.step(c, 3600.0)
    assert np.all(c[0, :, :, 6:] == 0.0)
    assert np.all(c[0, :, :, 5][np.arange(6) != 2] == 0.0)
    assert c[0, 2, 3, 5] == 4.0
    # alpha = D dt / dx^2 = 36000 here: rounding grows like eps * sqrt(alpha) per step
    assert c[0, :, :, :5].sum() == pytest.approx(6 * 7 * 5, rel=rtol_for(dtype, 1e-11, 1e-4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("thickness", [1, 4])
def test_half_open_barrier_gives_series_resistance_flux_ratio(dtype, impl, thickness) -> None:
    # Steady flux from a source (voxel 0) to a sink (last voxel) along x. A layer of m voxels
    # with conductance g is a region of diffusivity g D: centre-to-centre resistance across it
    # is dx (1 + m/g) / D instead of dx (m + 1) / D, so the same flux needs a concentration
    # drop larger by (m + g) / (g (m + 1)).
    n, first, g_layer = 24, 10, 0.5
    drops = []
    for g_value in (1.0, g_layer):
        g = np.ones((1, 1, n))
        g[..., first : first + thickness] = g_value
        s = solver((1, 1, n), [100.0], [0.0], dtype, impl, conductance=g)
        c, src, upt = s.zeros(), s.zeros(), s.zeros()
        src[0, 0, 0, 0] = 1.0
        upt[0, 0, 0, -1] = 1.0
        for _ in range(400):
            s.step(c, 2000.0, sources=src, uptake=upt)
        line = c[0, 0, 0].astype(np.float64)
        drops.append(line[first - 1] - line[first + thickness])
    expected = g_layer * (thickness + 1) / (thickness + g_layer)
    assert drops[0] / drops[1] == pytest.approx(expected, rel=rtol_for(dtype, 1e-8, 1e-3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_first_order_convergence_in_dt(dtype, impl) -> None:
    # smooth data, so that dt (not the stiff grid-scale modes) sets the error
    shape = (10, 10, 10)
    z, y, x = np.meshgrid(*(np.linspace(0, np.pi, n) for n in shape), indexing="ij")
    smooth = np.cos(z) * np.cos(2 * y) * np.cos(x)
    g = 0.6 + 0.3 * smooth
    c0 = np.stack([1 + smooth, 1 - 0.5 * smooth])
    src = np.stack([1e-2 * (1 + smooth), np.zeros(shape)])
    upt = np.stack([np.full(shape, 1e-2), 1e-2 * (1 - smooth)])

    def run(steps: int) -> np.ndarray:
        s = solver(shape, [2.0, 6.0], [1e-2, 2e-2], dtype, impl, conductance=g)
        c = c0.astype(dtype)
        for _ in range(steps):
            s.step(c, 60.0 / steps, sources=src.astype(dtype), uptake=upt.astype(dtype))
        return c.astype(np.float64)

    # successive differences of a first-order scheme shrink by 2 per halving of dt
    # (slowest resolved rate ~ D k^2 + decay ~ 0.05/s, so dt = 7.5 s .. 1.9 s is asymptotic)
    runs = [run(steps) for steps in (8, 16, 32)]
    ratio = np.abs(runs[0] - runs[1]).max() / np.abs(runs[1] - runs[2]).max()
    assert 1.8 < ratio < 2.2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_never_negative_under_extreme_uptake(dtype, impl) -> None:
    rng = np.random.default_rng(4)
    shape = (7, 8, 9)
    s = solver(shape, [1e4, 1.0], [0.0, 1.0], dtype, impl, conductance=rng.random(shape))
    c = (rng.random(s.field_shape) * (rng.random(s.field_shape) > 0.9)).astype(dtype)  # sharp spikes
    upt = (1e6 * (rng.random(s.field_shape) > 0.5)).astype(dtype)
    src = (rng.random(s.field_shape) * 1e3).astype(dtype)
    for dt in (1e-3, 60.0, 3600.0, 1e6):
        s.step(c, dt, sources=src, uptake=upt)
        assert c.min() >= 0.0
        assert np.all(np.isfinite(c))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_field", [False, True])
def test_numpy_and_numba_agree(dtype, per_field) -> None:
    if not numba_available():
        pytest.skip("numba missing")
    rng = np.random.default_rng(5)
    shape = (9, 11, 13)
    g = rng.random((3,) + shape if per_field else shape)
    start = rng.random((3,) + shape).astype(dtype)
    results = []
    for impl in ("numpy", "numba"):
        s = solver(shape, [300.0, 10.0, 0.0], [1e-3, 0.0, 1e-2], dtype, impl, conductance=g)
        c = start.copy()
        src = np.full(s.field_shape, 0.5, dtype=dtype)
        for _ in range(3):
            s.step(c, 120.0, sources=src, uptake=src * 1e-3)
        results.append(c.astype(np.float64))
    np.testing.assert_allclose(results[1], results[0], rtol=rtol_for(dtype, 1e-12, 1e-5), atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("conductance", ["none", "shared", "per_field"])
def test_matches_scipy_sparse_direct_solve(dtype, impl, conductance) -> None:
    rng = np.random.default_rng(6)
    shape = (5, 6, 7)
    g = {"none": None, "shared": rng.random(shape), "per_field": rng.random((2,) + shape)}[conductance]
    D, decay = [250.0, 40.0], [1e-3, 0.0]
    c0 = rng.random((2,) + shape)
    src, upt = rng.random((2,) + shape), rng.random((2,) + shape) * 1e-2
    expected = reference_lod_step(c0, 90.0, 10.0, D, decay, g, src, upt)
    s = solver(shape, D, decay, dtype, impl, conductance=g)
    c = c0.astype(dtype)
    s.step(c, 90.0, sources=src.astype(dtype), uptake=upt.astype(dtype))
    scale = np.abs(expected).max()
    assert np.abs(c - expected).max() / scale < rtol_for(dtype, 1e-12, 1e-5)


def test_conductance_may_change_between_steps() -> None:
    shape = (4, 5, 6)
    s = FieldSolver(shape, 10.0, [100.0], [0.0], dtype=np.float64, cpu_impl="numpy")
    c = np.random.default_rng(7).random(s.field_shape)
    expected = reference_lod_step(c, 60.0, 10.0, [100.0], [0.0], np.full(shape, 0.3))
    s.set_conductance(np.full(shape, 0.3))
    s.step(c, 60.0)
    np.testing.assert_allclose(c, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diffusion_um2_s": [1.0, 2.0]}, "one value per field each"),
        ({"decay_per_s": [-1.0]}, "decay_per_s: values must be finite and >= 0"),
        ({"conductance": np.full((3, 4, 5), 1.5)}, "conductance: values must lie in 0..1"),
        ({"conductance": np.ones((3, 4))}, "conductance: expected shape"),
        ({"voxel_um": 0.0}, "voxel_um: must be > 0"),
        ({"cpu_impl": "fortran"}, "cpu_impl: one of"),
    ],
)
def test_bad_construction_says_what_is_wrong(kwargs, message) -> None:
    args = {"shape": (3, 4, 5), "voxel_um": 10.0, "diffusion_um2_s": [1.0], "decay_per_s": [0.0]} | kwargs
    with pytest.raises(ValueError, match=message):
        FieldSolver(**args)


def test_bad_step_inputs_say_what_is_wrong() -> None:
    s = FieldSolver((3, 4, 5), 10.0, [1.0], [0.0], cpu_impl="numpy")
    with pytest.raises(TypeError, match="C-contiguous float32"):
        s.step(np.zeros(s.field_shape), 1.0)
    with pytest.raises(ValueError, match="fields: expected shape"):
        s.step(np.zeros((1, 3, 4, 4), np.float32), 1.0)
    with pytest.raises(ValueError, match="dt_s: must be > 0"):
        s.step(s.zeros(), 0.0)


@pytest.mark.gpu
def test_cupy_matches_numpy() -> None:
    from carabm.engine.backend import get_backend  # noqa: PLC0415

    gpu = get_backend("cupy")
    rng = np.random.default_rng(8)
    shape = (8, 9, 10)
    g = rng.random(shape)
    c = rng.random((2,) + shape).astype(np.float32)
    cpu = FieldSolver(shape, 10.0, [100.0, 5.0], [1e-3, 0.0], conductance=g, cpu_impl="numpy")
    dev = FieldSolver(shape, 10.0, [100.0, 5.0], [1e-3, 0.0], conductance=g, backend=gpu)
    out = gpu.asnumpy(dev.step(gpu.asarray(c), 60.0))
    np.testing.assert_allclose(out, cpu.step(c.copy(), 60.0), rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("with_conductance", [False, True, "mostly_one"])
def test_numba_sweeps_give_the_same_bits_on_one_thread_and_in_parallel(monkeypatch, with_conductance) -> None:
    """Small grids are swept on one thread (``SERIAL_BELOW``); lines are independent, so threads change no bit."""
    from carabm.engine import _fields_numba  # noqa: PLC0415

    rng = np.random.default_rng(5)
    shape = (3, 6, 7, 9)
    c0 = rng.random(shape, dtype=np.float32)
    src, upt = rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
    g = rng.random((1,) + shape[1:], dtype=np.float32) if with_conductance else None
    if with_conductance == "mostly_one":  # lines of conductance 1 (shared factors) beside a separator and a BBB column
        g[...] = 1.0
        g[0, :, :, 4] = 0.0
        g[0, :, 2:4, 6] = 0.3
    decay, alpha = np.full(3, 1e-3, np.float32), np.array([0.5, 4.0, 40.0], np.float32)
    results = []
    for serial_below in (1 << 30, 0):  # one thread, then the parallel region
        monkeypatch.setattr(_fields_numba, "SERIAL_BELOW", serial_below)
        c = c0.copy()
        for _ in range(3):
            _fields_numba.lod_step(c, src, upt, 60.0, decay, alpha, g)
        results.append(c)
    assert not np.array_equal(results[0], c0)
    assert np.array_equal(results[0], results[1])


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_lines_of_conductance_one_take_shared_factors_with_the_same_bits(dtype) -> None:
    """``_thomas_lines`` solves lines whose faces are all 1 with shared factors, the rest with ``_thomas``: the same bits as ``_thomas`` on all."""
    from carabm.engine import _fields_numba  # noqa: PLC0415

    rng = np.random.default_rng(9)
    n, m = 13, 17
    gl = np.ones((n, m), dtype=dtype)
    gl[:, 3] = 0.0  # a separator column
    gl[5, 7] = 0.25  # one BBB voxel in a line
    gl[:, 11] = rng.random(n).astype(dtype)  # a line of BBB voxels
    gl[0, 16] = dtype(1.0) - np.finfo(dtype).eps  # just below 1 at an end
    one = dtype(1.0)
    for alpha in (dtype(0.05), dtype(3.0), dtype(400.0)):
        c0 = rng.random((n, m)).astype(dtype)
        h = np.empty((n - 1, m), dtype=dtype)
        _fields_numba._harmonic_rows(gl[:-1], gl[1:], h)
        expected = c0.copy()
        _fields_numba._thomas(expected, h, alpha, one, np.empty((n, m), dtype=dtype))
        got = c0.copy()
        scratch = [np.empty(n, dtype), np.empty(n, dtype), np.empty(m, np.int64)] + [np.ones((n, m), dtype) for _ in range(3)]
        _fields_numba._thomas_lines(got, gl, alpha, one, *scratch)
        assert np.array_equal(got, expected), alpha
        assert not np.array_equal(got[:, 3], got[:, 4])  # the separator column is solved apart
