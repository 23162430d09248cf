"""The benchmark scripts run, follow the benchmarks contract (DESIGN.md), and fail cleanly without a GPU."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from carabm.engine.backend import get_backend, gpu_code_available

ROOT = Path(__file__).parents[1]
SCRIPTS = ROOT / "scripts"
CASE_KEYS = {"case", "value", "unit", "reference", "reference_value", "ratio"}


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, env=env, timeout=300)


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def check_contract(stdout: str, bench: str, backend: str) -> list[dict]:
    lines = stdout.strip().splitlines()
    assert len(lines) >= 2, stdout  # a table, then the JSON line
    result = json.loads(lines[-1])
    assert set(result) == {"bench", "backend", "device", "cases"}
    assert (result["bench"], result["backend"]) == (bench, backend)
    assert result["device"] and result["cases"]
    for case in result["cases"]:
        assert CASE_KEYS <= set(case), case
        assert isinstance(case["case"], str) and isinstance(case["unit"], str) and isinstance(case["reference"], str)
        for key in ("value", "reference_value", "ratio"):
            assert math.isfinite(case[key]) and case[key] > 0, (key, case)
    return result["cases"]


@pytest.mark.parametrize("name, bench", [("bench_agents.py", "agents"), ("bench_step.py", "step")])
def test_small_numpy_run_follows_the_contract(name, bench):
    result = run_script(name, "--size", "small", "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    cases = check_contract(result.stdout, bench, "numpy")
    if bench == "agents":
        assert all(case["reference"].startswith("mesa-") for case in cases)
    else:
        assert [case["case"] for case in cases] == ["quickstart ms/step"]
        assert cases[0]["ratio"] == 1.0  # NumPy under test is its own baseline


@pytest.mark.skipif(gpu_code_available(), reason="a GPU is usable here")
@pytest.mark.parametrize("name", ["bench_agents.py", "bench_step.py"])
def test_cupy_without_a_gpu_is_a_one_line_error(name):
    result = run_script(name, "--size", "small", "--backend", "cupy")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name[:-3]}: error: backend cupy"), result.stderr


def test_naive_reference_follows_the_engine_rule():
    """The in-run GPU reference (written with array operations) moves and counts as the engine does."""
    bench = load_script("bench_agents")
    backend = get_backend("numpy")
    shape = (30, 30, 30)
    position = bench.random_voxels(8100, shape)  # 30 % occupancy
    store, movement = bench.make_world(position, shape, backend)
    naive = bench.NaiveWalk(np, shape, position)
    assert np.array_equal(naive.contacts(), store.contact_counts(6))  # same start, same contacts
    moved_engine = [movement.step(step) for step in range(1, 11)]
    moved_naive = [naive.step() for _ in range(10)]
    store.check()
    naive.check()
    # same rule, independent random numbers: the same moved fraction (about 0.6 at 30 % occupancy)
    assert abs(np.mean(moved_engine) - np.mean(moved_naive)) / len(position) < 0.02
    assert abs(store.contact_counts(6).mean() - naive.contacts().mean()) < 0.1


def test_gpu_cases_run_on_numpy_arrays(monkeypatch, capsys):
    """The GPU table and JSON cases (sorted and unsorted vs the naive reference), on a tiny lattice with NumPy."""
    bench = load_script("bench_agents")
    monkeypatch.setattr(bench, "GPU_SIDE", 16)
    monkeypatch.setattr(bench, "GPU_WARMUP", 1)
    monkeypatch.setattr(bench, "GPU_SIZES", {"small": {500: 4, 1000: 3}})
    monkeypatch.setattr(bench, "TARGET_MS", {1000: 0.3})
    cases = bench.run_gpu(SimpleNamespace(size="small", sort_every=2), get_backend("numpy"))
    assert "agents" in capsys.readouterr().out
    assert len(cases) == 4 and [c.get("target_ms_per_step") for c in cases] == [None, None, None, 0.3]
    for case in cases:
        assert CASE_KEYS <= set(case) and case["reference"].startswith("naive CuPy")
        assert all(case[key] > 0 for key in ("value", "reference_value", "ratio", "ms_per_step", "reference_ms_per_step"))


def test_big_step_case_fits_its_compartments():
    """The 256^3 case of bench_step holds about 1e6 cells, and each type fits its home compartment."""
    from carabm.engine.lattice import COMPARTMENTS  # noqa: PLC0415
    from carabm.io.config import load_config  # noqa: PLC0415
    from carabm.simulation import build_lattice  # noqa: PLC0415

    bench = load_script("bench_step")
    config = load_config(bench.DEFAULT, bench.big_overrides(), check_memory=False)
    assert config.lattice.shape == (256, 256, 256)
    cells = config.cells
    assert abs(sum(getattr(cells, name).initial_count for name in ("bcell", "macrophage", "monocyte", "microglia")) - 1e6) < 10
    labels = build_lattice(config).labels
    tissue = int((labels == COMPARTMENTS["tissue"]).sum())
    cns = int((labels == COMPARTMENTS["cns"]).sum())
    assert cells.bcell.initial_count + cells.macrophage.initial_count + cells.monocyte.initial_count < 0.5 * tissue
    assert cells.microglia.initial_count < 0.5 * cns


def test_step_gpu_rows_compare_with_numpy(monkeypatch, capsys):
    """With a GPU under test, each case's reference is the NumPy backend of the same run (timings faked here)."""
    from carabm.engine.backend import Backend  # noqa: PLC0415

    bench = load_script("bench_step")
    gpu = Backend("cupy", np, "GPU 0: fake")
    monkeypatch.setattr(bench, "get_backend", lambda name: gpu if name in ("cupy", "auto") else get_backend("numpy"))
    monkeypatch.setattr(bench, "big_overrides", lambda: ["lattice.shape=[256,256,256]"])

    def fake_steps(case, backend, steps=None):
        ms = {"numpy": 40.0, "cupy": 4.0}[backend.name]
        return {"seconds_per_step": ms / 1e3, "agents": 10, "build_s": 0.1, "voxels": 1000, "time_h": 1.0}

    monkeypatch.setattr(bench, "time_steps", fake_steps)
    monkeypatch.setattr(bench, "full_run", lambda backend: {"wall_s": {"numpy": 600.0, "cupy": 60.0}[backend.name],
                                                            "loop_s": 1.0, "steps": 3360, "time_h": 336.0})
    monkeypatch.setattr(sys, "argv", ["bench_step.py", "--size", "medium", "--full-run"])
    bench.main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["backend"] == "cupy"
    by_case = {case["case"]: case for case in result["cases"]}
    assert by_case["default ms/step"]["ratio"] == 10.0 and by_case["default ms/step"]["reference_value"] == 40.0
    big = by_case["256^3 ~1e+06 agents ms/step"]
    assert big["reference_value"] is None and big["ratio"] is None  # NumPy at 256^3 only at --size large
    run = by_case["default 14-day run wall time"]
    assert run["ratio"] == 10.0 and run["target_s"] == 120.0
