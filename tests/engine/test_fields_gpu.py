"""GPU field solver: the CUDA kernels (CuPy backend) against the NumPy reference; skipped without a GPU.

Tolerance. Both paths perform the same float32 operations in the same order, and the
kernels are compiled without fused multiply-adds (``--fmad=false``), so on a correct
GPU the fields should agree to the bit (as they do under the host emulation in
``test_kernels.py``). The test still allows float32 rounding: a relative 1e-5 (~80 ulp;
one step does ~10 dependent roundings per value per sweep, 3 sweeps, 5 steps, each at
most half an ulp, 6e-8) on every value above 1e-6 of the field's maximum, and an absolute
1e-6 of the maximum below that (where relative error is meaningless: values near
underflow of what the solver resolves). A failure of the exact-equality check alone
points at rounding (e.g. FMA contraction), a failure of the tolerance at a real bug.
"""

from __future__ import annotations

import numpy as np
import pytest

from carabm.engine.backend import get_backend
from carabm.engine.blood_pool import BloodPool
from carabm.engine.fields import FieldSolver

pytestmark = pytest.mark.gpu

SHAPES = [(24, 20, 37), (16, 33, 70), (1, 8, 40), (9, 1, 1)]
DIFFUSION, DECAY = [120.0, 0.0, 900.0], [1e-4, 3e-3, 0.0]


def assert_float32_parity(got: np.ndarray, expected: np.ndarray) -> None:
    """Relative 1e-5 above 1e-6 of each field's max, absolute 1e-6 x max below (see module docstring)."""
    for k in range(expected.shape[0]):
        scale = float(np.abs(expected[k]).max()) or 1.0
        big = np.abs(expected[k]) > 1e-6 * scale
        np.testing.assert_allclose(got[k][big], expected[k][big], rtol=1e-5, atol=0, err_msg=f"field {k}")
        np.testing.assert_allclose(got[k][~big], expected[k][~big], rtol=0, atol=1e-6 * scale, err_msg=f"field {k}")


def problem(shape, conductance: str, seed: int = 7):  # noqa: ANN001, ANN201
    rng = np.random.default_rng(seed)
    g = {
        "none": None,
        "shared": (rng.random(shape) * (rng.random(shape) > 0.2)).astype(np.float32),
        "per_field": rng.random((3,) + shape).astype(np.float32),
    }[conductance]
    full = (3,) + tuple(shape)
    c0 = (rng.random(full) * 10).astype(np.float32)
    sources = (rng.random(full) * (rng.random(full) > 0.7)).astype(np.float32)
    uptake = (rng.random(full) * 1e-3).astype(np.float32)
    return g, c0, sources, uptake


def run(backend_name: str, shape, g, c0, sources, uptake, steps: int = 5) -> np.ndarray:  # noqa: ANN001
    backend = get_backend(backend_name)
    solver = FieldSolver(
        shape, 20.0, DIFFUSION, DECAY, backend=backend, conductance=g, cpu_impl="numpy" if backend_name == "numpy" else "auto"
    )
    c = backend.asarray(c0)
    src, upt = backend.asarray(sources), backend.asarray(uptake)
    for step in range(steps):
        dt = 60.0 if step % 2 == 0 else 7.5
        solver.step(c, dt, src if step != 1 else None, upt if step != 2 else None)
    backend.synchronize()
    return backend.asnumpy(c)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("conductance", ["none", "shared", "per_field"])
def test_cuda_kernels_match_numpy(shape, conductance) -> None:
    g, c0, sources, uptake = problem(shape, conductance)
    expected = run("numpy", shape, g, c0, sources, uptake)
    got = run("cupy", shape, g, c0, sources, uptake)
    assert_float32_parity(got, expected)


@pytest.mark.parametrize("conductance", ["none", "shared"])
def test_cuda_kernels_match_numpy_to_the_bit(conductance) -> None:
    shape = (24, 20, 37)
    g, c0, sources, uptake = problem(shape, conductance)
    expected = run("numpy", shape, g, c0, sources, uptake)
    got = run("cupy", shape, g, c0, sources, uptake)
    mismatch = int((got != expected).sum())
    assert mismatch == 0, f"{mismatch} values differ in the last bits (FMA contraction? see COMPILE_OPTIONS)"


def test_cuda_solver_uses_the_kernels_and_is_deterministic() -> None:
    shape = (16, 33, 70)
    g, c0, sources, uptake = problem(shape, "shared")
    solver = FieldSolver(shape, 20.0, DIFFUSION, DECAY, backend="cupy", conductance=g)
    assert solver.impl == "cupy"
    first = run("cupy", shape, g, c0, sources, uptake)
    second = run("cupy", shape, g, c0, sources, uptake)
    np.testing.assert_array_equal(first, second)


def test_blood_pool_exchange_on_the_gpu_matches_numpy() -> None:
    shape = (12, 16, 20)
    rng = np.random.default_rng(5)
    mask = rng.random(shape) < 0.1
    weight = np.where(np.arange(shape[2]) < 15, 1.0, 6.5)[None, None, :] * np.ones(shape)  # a "brain vessel" counted 6.5 times
    start = (rng.random((2,) + shape) * 10).astype(np.float32)
    results = {}
    for name in ("numpy", "cupy"):
        backend = get_backend(name)
        solver = FieldSolver(shape, 20.0, [100.0, 50.0], [1e-4, 0.0], backend=backend, cpu_impl="numpy")
        pool = BloodPool(solver, backend.asarray(mask), 5000.0, 1e-6, [3600.0, 1800.0], serum_pg_ml=[50.0, 0.0],
                         capillary_mask=backend.asarray(~mask), capillary_rate_per_s=[2e-3, 5e-4],  # with the capillary bed
                         blood_weight=weight)  # and two weights of blood voxels
        fields = backend.asarray(start)
        for _ in range(10):
            pool.step(fields, 60.0)
        results[name] = (backend.asnumpy(fields), pool.serum_pg_ml)
    # the serum differs from NumPy only by the order of its float64 sums (~1e-15 relative)
    np.testing.assert_allclose(results["cupy"][1], results["numpy"][1], rtol=1e-12)
    assert_float32_parity(results["cupy"][0], results["numpy"][0])
