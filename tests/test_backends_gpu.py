"""NumPy and CuPy runs of the real model agree in distribution over seeds (skipped without a GPU).

8 seeds x 2 backends x 8 days of the quickstart, 8 worker processes: a few minutes on a GPU machine.

The two backends draw the same random words, but float32 sums of secretion (atomic adds on
the GPU, float64 ``bincount`` on the CPU) and ``expf``/``powf`` round differently, so runs
drift apart within hours of model time and are compared as distributions: for each readout
(peak serum IL-6, CAR-T peak count, day of the CAR-T peak, CRS onset day) the seeds of one
backend must not be separated from the other's (two-sided Mann-Whitney U, p >= 0.001) and
the means must agree within four standard errors of their difference.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from carabm.validation import first_day, run_series

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
SEEDS = list(range(1, 9))
OVERRIDES = ["run.duration_h=192"]  # 8 days: past the CAR-T peak (day ~6) and the IL-6 peak


def readouts(seed: int, backend: str) -> dict[str, float]:
    s = run_series(QUICKSTART, OVERRIDES, seed=seed, backend=backend)
    peak = int(np.argmax(s["counts/cart"]))
    return {
        "peak IL-6 [pg/mL]": float(s["serum/IL6"].max()),
        "CAR-T peak [cells]": float(s["counts/cart"][peak]),
        "CAR-T peak day": float(s["time_h"][peak] / 24.0),
        "CRS onset day": first_day(s, "crs_grade", 1),
    }


def test_numpy_and_cupy_runs_agree_in_distribution() -> None:
    from scipy.stats import mannwhitneyu  # noqa: PLC0415

    # spawned workers (a forked child cannot use the parent's CUDA context); GPU runs share the device
    with ProcessPoolExecutor(max_workers=8, mp_context=multiprocessing.get_context("spawn")) as pool:
        cpu_runs = pool.map(readouts, SEEDS, ["numpy"] * len(SEEDS))
        gpu_runs = pool.map(readouts, SEEDS, ["cupy"] * len(SEEDS))
        cpu, gpu = list(cpu_runs), list(gpu_runs)
    for key in cpu[0]:
        a = np.array([r[key] for r in cpu])
        b = np.array([r[key] for r in gpu])
        assert np.isfinite(a).all() and np.isfinite(b).all(), key
        p = mannwhitneyu(a, b, alternative="two-sided").pvalue
        standard_error = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        print(f"{key}: numpy {a.mean():.4g} ± {a.std(ddof=1):.2g}, cupy {b.mean():.4g} ± {b.std(ddof=1):.2g}, U-test p = {p:.3g}")
        assert p >= 1e-3, f"{key}: the backends' seeds separate (p = {p:.2g}): numpy {a}, cupy {b}"
        assert abs(a.mean() - b.mean()) <= 4 * standard_error + 1e-9 * abs(a.mean()), f"{key}: means differ: {a.mean()} vs {b.mean()}"


def run_then_resume(tmp_path: Path, first: str, second: str) -> None:
    """``carabm run`` 12 h on backend ``first``, then resume its checkpoint to 18 h on ``second``."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from carabm.io.runfile import open_run  # noqa: PLC0415

    out, branch = tmp_path / f"{first}.h5", tmp_path / f"{first}-{second}.h5"
    run = [sys.executable, "-m", "carabm", "run", str(QUICKSTART), "--out", str(out), "--backend", first,
           "--set", "run.duration_h=12", "--set", "run.checkpoint_every_h=6", "--set", "run.snapshot_every_h=6"]  # fmt: skip
    result = subprocess.run(run, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    series = open_run(out)
    assert float(series["time_h"].max()) == 12.0 and float(series["count_cart"].max()) > 0
    resume = [sys.executable, "-m", "carabm", "run", "--resume", str(out), "--out", str(branch), "--backend", second,
              "--set", "run.duration_h=18"]  # fmt: skip
    result = subprocess.run(resume, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert float(open_run(branch)["time_h"].max()) == 18.0


def test_cli_run_on_the_gpu_writes_a_readable_file_and_resumes_on_the_cpu(tmp_path) -> None:
    # state is checkpointed as host arrays and randomness is keyed by seed and step
    run_then_resume(tmp_path, "cupy", "numpy")
    run_then_resume(tmp_path, "numpy", "cupy")


def test_a_gpu_run_is_reproducible_for_a_seed() -> None:
    # Philox keyed by id; one agent per voxel, so each scattered float32 sum has one term per
    # call; deterministic reductions: the same seed gives the same run on the same GPU.
    first = run_series(QUICKSTART, ["run.duration_h=36"], seed=3, backend="cupy")
    second = run_series(QUICKSTART, ["run.duration_h=36"], seed=3, backend="cupy")
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert first["counts/cart"].max() > 0
