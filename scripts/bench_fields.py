"""Benchmark the cytokine field solver (K = 8 fields, float32, BBB-like conductance).

Usage: python scripts/bench_fields.py --size small|medium|large --backend numpy|cupy|auto [--impl auto|numpy|numba]
       [--peak-gbs GB/s] [--copy-gbs GB/s]

Prints a table, then one JSON line (the benchmarks contract in DESIGN.md); every reference
is measured in the same run. On a GPU (``--backend cupy``) it adds the achieved memory
bandwidth of the CUDA kernels against the device's peak (from the device's memory clock
and bus width, or ``--peak-gbs``), using the byte model of :func:`kernel_bytes_per_step`,
and, not to judge the kernels only by their own byte model, the step time against the
roofline of :data:`ROOFLINE_BYTES` per voxel·field at the device's measured copy bandwidth
(``--copy-gbs`` to give it): the target is a ratio of at least 0.8 (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np

from carabm.engine._fields_reference import explicit_euler_step, reference_lod_step
from carabm.engine.backend import get_backend
from carabm.engine.fields import FieldSolver
from carabm.errors import CarabmError

SIZES = {"small": 64, "medium": 128, "large": 256}
N_FIELDS = 8
VOXEL_UM = 20.0
DT_S = 60.0
DIFFUSION = [100.0, 150.0, 80.0, 120.0, 60.0, 200.0, 90.0, 50.0]  # µm²/s, cytokine-like
DECAY = [3e-4, 2e-4, 1e-4, 5e-4, 1e-4, 2e-4, 3e-4, 1e-3]  # 1/s


def conductance(n: int) -> np.ndarray:
    """1 everywhere but a half-open BBB slab (g = 0.3) at 3/4 along x."""
    g = np.ones((n, n, n), dtype=np.float32)
    g[:, :, (3 * n) // 4] = 0.3
    return g


def kernel_bytes_per_step(n_values: int, conductance: bool, reaction: bool) -> int:
    """DRAM bytes one step of kernels/diffusion_lod.cu moves for ``n_values`` = K x voxels (float32).

    Per value and sweep: the forward pass reads c (and g with conductance) and writes c
    (and u); the backward pass reads c (and u) and writes c: 7 accesses with conductance,
    4 without. The reaction (fused into the z sweep) adds a read of S and of U. g is counted
    once per field, as each field's lines read it and a large grid's g does not stay in L2.
    """
    per_sweep = 7 if conductance else 4
    return 4 * n_values * (3 * per_sweep + (2 if reaction else 0))


#: bytes per voxel·field and step of the same arithmetic done in one pass (c read and written
#: once, conductance, sources and uptake read once, rounded up): the roofline of docs/gpu.md
ROOFLINE_BYTES = 24
#: the LOD target: the step at least this fraction of the roofline speed at copy bandwidth
ROOFLINE_TARGET = 0.8


def copy_bandwidth_gbs(backend: Any, n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read plus bytes written), median of ``repeats``."""
    xp = backend.xp
    source = xp.ones(n_bytes // 4, dtype=xp.float32)
    target = xp.empty_like(source)
    seconds = time_steps(lambda: xp.copyto(target, source), backend.synchronize, repeats)
    return 2 * n_bytes / seconds / 1e9


def peak_bandwidth_gbs(backend: Any) -> float:
    """Theoretical DRAM bandwidth of the current GPU in GB/s: 2 x memory clock x bus width (DDR).

    Read as device attributes (cudaDevAttrMemoryClockRate = 36 in kHz,
    cudaDevAttrGlobalMemoryBusWidth = 37 in bits): CUDA 13 dropped these fields from
    cudaDeviceProp. Pass ``--peak-gbs`` where the driver reports neither.
    """
    runtime = backend.xp.cuda.runtime
    device = backend.xp.cuda.Device().id
    try:
        clock_khz = runtime.deviceGetAttribute(36, device)
        bus_bits = runtime.deviceGetAttribute(37, device)
    except Exception as exc:  # an old CuPy or a driver without the attributes
        raise SystemExit(f"bench_fields: cannot read the GPU's memory clock ({exc}); pass --peak-gbs") from exc
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def time_steps(step: Any, sync: Any, repeats: int, warmup: bool = True) -> float:
    """Median seconds of ``step()`` over ``repeats`` runs, after one warm-up (``warmup=False``: none)."""
    if warmup:
        step()
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    """Run the cases and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--backend", choices=("numpy", "cupy", "auto"), default="auto")
    parser.add_argument("--impl", choices=("auto", "numpy", "numba"), default="auto")
    parser.add_argument("--peak-gbs", type=float, default=None, help="GPU peak memory bandwidth, GB/s (default: from the device)")
    parser.add_argument(
        "--copy-gbs", type=float, default=None, help="GPU device-to-device copy bandwidth, GB/s (default: measured, 1 GiB copies)"
    )
    args = parser.parse_args()
    try:
        backend = get_backend(args.backend)
    except CarabmError as exc:
        print(f"bench_fields: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    n = SIZES[args.size]
    shape = (n, n, n)
    repeats = {"small": 5, "medium": 3, "large": 2}[args.size]
    updates = N_FIELDS * n**3
    g = conductance(n)
    rng = np.random.default_rng(0)
    host = rng.random((N_FIELDS,) + shape, dtype=np.float32)
    field_bytes = host.nbytes
    cases: list[dict[str, Any]] = []
    rows: list[tuple[str, str]] = []

    def add(case: str, value: float, unit: str, reference: str, reference_value: float, ratio: float) -> None:
        cases.append(
            {
                "case": case,
                "value": value,
                "unit": unit,
                "reference": reference,
                "reference_value": reference_value,
                "ratio": ratio,
            }
        )
        rows.append((case, f"{value:.4g} {unit}  vs {reference} {reference_value:.4g}  (ratio {ratio:.3g})"))

    # main solver
    solver = FieldSolver(shape, VOXEL_UM, DIFFUSION, DECAY, backend=backend, conductance=g, cpu_impl=args.impl)
    fields = backend.asarray(host)
    fields += 0  # touch pages before measuring memory
    warm = FieldSolver((8, 8, 8), VOXEL_UM, DIFFUSION, DECAY, backend=backend, conductance=g[:8, :8, :8], cpu_impl=args.impl)
    warm.step(warm.zeros(), DT_S)  # load compiled code first: memory below is the solver's working set
    if backend.is_gpu:
        memory_pool = backend.xp.get_default_memory_pool()
        before = memory_pool.total_bytes()
    else:
        before = rss_bytes()
    t_main = time_steps(lambda: solver.step(fields, DT_S), backend.synchronize, repeats)
    after = memory_pool.total_bytes() if backend.is_gpu else rss_bytes()
    peak_extra = max(after - before, 0)
    sources = backend.asarray(host * 1e-3)
    uptake = backend.asarray(host * 1e-4)
    t_main_su = time_steps(lambda: solver.step(fields, DT_S, sources, uptake), backend.synchronize, repeats)

    # reference: the NumPy LOD (same method, vectorised NumPy)
    numpy_solver = FieldSolver(shape, VOXEL_UM, DIFFUSION, DECAY, conductance=g, cpu_impl="numpy")
    host_fields = host.copy()
    # NumPy compiles nothing: no warm-up above 64^3, where a step takes seconds (gpu_check's time budget)
    t_numpy = time_steps(lambda: numpy_solver.step(host_fields, DT_S), lambda: None, 1 if n > 64 else 2, warmup=n <= 64)
    label = "cuda LOD" if solver.impl == "cupy" else f"{solver.impl} LOD"
    add(
        f"{label} {n}^3x{N_FIELDS} updates/s", updates / t_main, "voxel*field/s", "numpy LOD", updates / t_numpy, t_numpy / t_main
    )
    add(f"{label} {n}^3x{N_FIELDS} ms/step", t_main * 1e3, "ms", "numpy LOD", t_numpy * 1e3, t_numpy / t_main)
    add(
        f"{label} {n}^3x{N_FIELDS} +sources+uptake ms/step",
        t_main_su * 1e3,
        "ms",
        "numpy LOD",
        t_numpy * 1e3,
        t_numpy / t_main_su,
    )
    add(
        f"{label} {n}^3x{N_FIELDS} peak extra memory",
        peak_extra / field_bytes,
        "x field array",
        "field array",
        1.0,
        peak_extra / field_bytes,
    )

    # GPU: achieved bandwidth of the kernels against the device's peak
    if backend.is_gpu:
        peak = args.peak_gbs or peak_bandwidth_gbs(backend)
        for case_name, seconds, reaction in (("", t_main, False), (" +sources+uptake", t_main_su, True)):
            achieved = kernel_bytes_per_step(updates, True, reaction) / seconds / 1e9
            add(
                f"{label} {n}^3x{N_FIELDS}{case_name} achieved bandwidth",
                achieved,
                "GB/s",
                f"peak DRAM bandwidth{' (--peak-gbs)' if args.peak_gbs else ''}",
                peak,
                achieved / peak,
            )
        copy = args.copy_gbs or copy_bandwidth_gbs(backend)
        for case_name, seconds in (("", t_main), (" +sources+uptake", t_main_su)):
            roofline_s = ROOFLINE_BYTES * updates / (copy * 1e9)
            add(
                f"{label} {n}^3x{N_FIELDS}{case_name} ms/step vs {ROOFLINE_BYTES} B roofline",
                seconds * 1e3,
                "ms",
                f"{ROOFLINE_BYTES} B/voxel*field at copy bandwidth {copy:.0f} GB/s{' (--copy-gbs)' if args.copy_gbs else ''}",
                roofline_s * 1e3,
                roofline_s / seconds,
            )

    # reference: explicit Euler at its stable step, work per simulated hour
    dt_explicit = VOXEL_UM**2 / (6 * max(DIFFUSION)) * 0.99
    ex_fields = host.copy()
    t_explicit = time_steps(
        lambda: explicit_euler_step(ex_fields, dt_explicit, VOXEL_UM, DIFFUSION, DECAY), lambda: None, 1, warmup=n <= 64
    )
    per_hour_main = t_main * 3600 / DT_S
    per_hour_explicit = t_explicit * 3600 / dt_explicit
    add(
        f"{label} {n}^3x{N_FIELDS} s per simulated hour (dt={DT_S:g}s)",
        per_hour_main,
        "s/h",
        f"explicit Euler dt={dt_explicit:.3g}s",
        per_hour_explicit,
        per_hour_explicit / per_hour_main,
    )

    # reference: scipy.sparse direct solve of the same LOD system (small only; 1 field, 32^3)
    if args.size == "small":
        m = 32
        small_g = conductance(m)
        c0 = rng.random((1, m, m, m))
        start = time.perf_counter()
        expected = reference_lod_step(c0, DT_S, VOXEL_UM, DIFFUSION[:1], DECAY[:1], small_g)
        t_ref = time.perf_counter() - start
        small = FieldSolver(
            (m, m, m), VOXEL_UM, DIFFUSION[:1], DECAY[:1], backend=backend, conductance=small_g, cpu_impl=args.impl
        )
        c = backend.asarray(c0.astype(np.float32))
        t_small = time_steps(lambda: small.step(c.copy(), DT_S), backend.synchronize, 5)
        small.step(c, DT_S)
        diff = float(np.abs(backend.asnumpy(c) - expected).max() / np.abs(expected).max())
        add(f"{label} 32^3x1 updates/s", m**3 / t_small, "voxel*field/s", "scipy.sparse spsolve", m**3 / t_ref, t_ref / t_small)
        add(f"{label} 32^3x1 max rel diff vs scipy (float32)", diff, "relative", "tolerance", 1e-5, diff / 1e-5)

    width = max(len(r[0]) for r in rows)
    print(f"fields benchmark: {backend.device}, impl {solver.impl}, size {args.size}, K={N_FIELDS}, float32")
    for case, text in rows:
        print(f"  {case:<{width}}  {text}")
    if backend.is_gpu:
        print(f"  target: the roofline cases at ratio >= {ROOFLINE_TARGET} ({ROOFLINE_TARGET:.0%} of copy bandwidth at {ROOFLINE_BYTES} B)")
    print(json.dumps({"bench": "fields", "backend": backend.name, "device": backend.device, "cases": cases}))


if __name__ == "__main__":
    main()
