"""The benchmark scripts run, follow the benchmarks contract (DESIGN.md), and fail cleanly without a GPU."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import h5py
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
@pytest.mark.parametrize("name", ["bench_agents.py", "bench_step.py", "bench_launch.py", "bench_batch.py"])
def test_cupy_without_a_gpu_is_a_one_line_error(name):
    result = run_script(name, "--size", "small", "--backend", "cupy")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name[:-3]}: error: backend cupy"), result.stderr


def test_batch_bound_bench_follows_the_contract():
    """Two sizes, a few steps: B = 1 is its own reference; B = 2 has twice the voxels and about twice the agents."""
    result = run_script("bench_batch.py", "--sizes", "2", "--steps", "3", "--warm-h", "0.2", "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    one, two = check_contract(result.stdout, "batch", "numpy")
    assert (one["case"], one["ratio"]) == ("1 members' worth, ms/step", 1.0)
    assert two["voxels"] == 2 * one["voxels"] and 1.5 * one["agents"] < two["agents"] < 2.5 * one["agents"]
    assert two["reference_value"] == pytest.approx(2 * one["value"], rel=1e-3)
    assert "T(B) = " in result.stdout


def test_launch_check_bench_follows_the_contract():
    result = run_script("bench_launch.py", "--size", "small", "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    (case,) = check_contract(result.stdout, "launch", "numpy")
    assert case["unit"] == "µs" and case["reference"] == "full check per launch"


def test_step_bench_without_a_gpu_refuses_no_reference():
    result = run_script("bench_step.py", "--backend", "numpy", "--no-reference")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "bench_step: error: --no-reference needs a GPU backend (NumPy is the reference itself)"


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


# ---------------------------------------------------------------------------------------
# scripts/gpu_check.sh: what can be checked without a GPU


def run_gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(SCRIPTS / "gpu_check.sh"), *args], capture_output=True, text=True, env=env, timeout=300)


def test_gpu_check_without_a_gpu_skips_every_gpu_part_and_measures_nothing(tmp_path):
    out = tmp_path / "check"
    result = run_gpu_check("--no-gpu", "--skip", "install", "--out", str(out))
    assert result.returncode == 1, result.stderr  # nothing verified: not a success
    summary = json.loads((out / "summary.json").read_text())
    parts = {p["part"]: p for p in summary["parts"]}
    load_script("gpu_check")
    assert list(parts) == list(sys.modules["_bench_gpu_check"].PART_NAMES)
    assert parts.pop("install")["reason"] == "--skip"
    assert all(p["status"] == "skipped" and p["reason"].startswith("no GPU") for p in parts.values())
    assert len(summary["targets"]) == 10 and all(t["met"] is None and t["note"].startswith("not measured") for t in summary["targets"])
    assert "0 met, 0 not met, 10 not measured" in result.stdout and "pytest_gpu           skipped: no GPU" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--timeout", "fields=60"], "unknown part 'fields' (parts: install, pytest_gpu,"),
        (["--timeout", "bench_step=soon"], "seconds must be a positive number"),
        (["--only", "gpu"], "invalid choice: 'gpu'"),
        (["--budget", "-5"], "--budget must be a positive number"),
        (["--out", "{existing}"], "folder exists and is not empty; name a new one or pass --overwrite"),
    ],
)
def test_gpu_check_refuses_bad_arguments_in_one_line(tmp_path, args, message):
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "summary.json").write_text("mine")
    result = run_gpu_check("--no-gpu", *(a.format(existing=existing) for a in args))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: ") and message in lines[0], result.stderr
    assert (existing / "summary.json").read_text() == "mine" and len(list(existing.iterdir())) == 1


def test_a_failing_or_hanging_part_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    check = load_script("gpu_check")
    python = [sys.executable, "-c"]
    parts = (
        check.Part("fails", 60, False, "exits 3", lambda out, py: [*python, "raise SystemExit(3)"]),
        check.Part("hangs", 60, False, "sleeps, with a child", lambda out, py: [*python,
                   "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"]),
        check.Part("passes", 60, False, "prints", lambda out, py: [*python, "print('ok')"]),
    )  # fmt: skip
    monkeypatch.setattr(check, "PARTS", parts)
    monkeypatch.setattr(check, "PART_NAMES", tuple(p.name for p in parts))
    start = time.monotonic()
    assert check.main(["--out", str(tmp_path / "c"), "--timeout", "hangs=2"]) == 1
    assert time.monotonic() - start < 60  # the hanging part and its child were killed, not waited for
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    status = {p["part"]: (p["status"], p["reason"]) for p in summary["parts"]}
    assert status == {"fails": ("failed", "exit status 3"), "hangs": ("timeout", "ran past 2 s"), "passes": ("passed", "")}
    assert (tmp_path / "c" / "passes.log").read_text().endswith("ok\n")
    assert "timed out after 2 s" in (tmp_path / "c" / "hangs.log").read_text()
    assert "fails: failed" in capsys.readouterr().out


def test_gpu_check_judges_each_target_from_what_the_parts_wrote(tmp_path):
    check = load_script("gpu_check")
    ran = {name: {"part": name, "status": "passed", "reason": "", "returncode": 0} for name in check.PART_NAMES}
    ran["sanitizer_racecheck"].update(status="failed", returncode=1)
    ran["bench_step"].update(status="timeout", reason="ran past 150 s", returncode=None)
    (tmp_path / "sanitizer_memcheck.log").write_text("========= ERROR SUMMARY: 0 errors\n")
    (tmp_path / "sanitizer_racecheck.log").write_text("========= ERROR SUMMARY: 2 errors\n")
    (tmp_path / "sanitizer_synccheck.log").write_text("========= ERROR SUMMARY: 0 errors\n")
    tests = "".join(f'<testcase classname="t" name="{n}"/>' for n in check.HOST_SYNC_TESTS[:1])
    tests += f'<testcase classname="t" name="{check.HOST_SYNC_TESTS[1]}"><failure message="waited"/></testcase>'
    (tmp_path / "pytest_gpu.xml").write_text(f'<testsuites><testsuite name="pytest">{tests}</testsuite></testsuites>')

    def bench_line(bench: str, cases: list[dict]) -> str:
        return "a table\n" + json.dumps({"bench": bench, "backend": "cupy", "device": "GPU 0", "cases": cases}) + "\n"

    roofline = {"case": "cuda LOD 256^3x8 ms/step vs 24 B roofline", "value": 1.2, "unit": "ms", "reference": "24 B at 3000 GB/s",
                "reference_value": 1.0, "ratio": 1 / 1.2}  # fmt: skip
    (tmp_path / "bench_fields.log").write_text(bench_line("fields", [{**roofline, "case": roofline["case"].replace("ms/", "+sources+uptake ms/")}, roofline]))
    agents = [{"case": f"walk+exclusion+contacts n={n:.0e} lattice=256^3 sorted", "ms_per_step": ms, "target_ms_per_step": limit}
              for n, ms, limit in ((1e5, 0.1, 0.05), (1e6, 0.25, 0.3), (1e7, 1.5, 1.0))]  # fmt: skip
    (tmp_path / "bench_agents.log").write_text(bench_line("agents", agents))
    batch = {"case": "16 members' worth, ms/step", "value": 80.0, "unit": "ms", "reference": "16 x T(1)", "reference_value": 96.0,
             "ratio": 1.2, "target_ratio": 4.0}  # fmt: skip
    (tmp_path / "bench_batch.log").write_text(bench_line("batch", [{**batch, "case": "1 members' worth, ms/step", "ratio": 1.0}, batch]))
    met = {t["target"].split(":")[0]: t["met"] for t in check.evaluate_targets(ran, tmp_path)}
    assert met == {
        "pytest -m gpu passes": True,
        "no host synchronisation inside a step except the documented reads": False,
        "compute-sanitizer memcheck": True,
        "compute-sanitizer racecheck": False,
        "compute-sanitizer synccheck": True,
        "LOD step 256^3x8 at >= 80% of copy bandwidth at 24 B/voxel*field (H100": True,  # 1.2 <= 1.0 / 0.8
        "agents n=1e+06": True,
        "agents n=1e+07": False,
        "14-day default run < 120 s": None,  # bench_step timed out: not measured
        "a step of 16 members' worth >= 4x faster than 16 single steps (the bound on a member axis)": False,  # 1.2x
    }
    ran["bench_agents"].update(status="skipped", reason="--skip")  # its log is from an earlier run: not read
    assert [t["met"] for t in check.evaluate_targets(ran, tmp_path) if t["target"].startswith("agents")] == [None, None]


def test_run_bench_follows_the_contract_on_a_tiny_run(tmp_path):
    """bench_run times whole `carabm run quickstart` processes (here one tiny run) and keeps its output when asked."""
    tiny = ["lattice.shape=[6, 12, 24]", "run.duration_h=0.5", "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10",
            "cells.monocyte.initial_count=3", "cells.microglia.initial_count=5"]  # fmt: skip
    result = run_script("bench_run.py", "--runs", "1", "--keep", str(tmp_path), *[a for s in tiny for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    cases = check_contract(result.stdout, "run", "numpy")
    by_case = {case["case"].split(" (")[0]: case for case in cases}
    wall = by_case["quickstart run wall time"]
    assert wall["steps"] == 5 and wall["reference_value"] == 20.0 and wall["cpus"] == os.cpu_count()
    shares = [by_case[f"{phase} time"]["share"] for phase in ("startup", "stepping", "output")]
    assert all(0 < share < 1 for share in shares)
    with h5py.File(tmp_path / "run0.h5", "r") as f:  # the kept output is a complete run
        assert f.attrs["status"] == "complete" and f["timeseries/time_h"].shape == (6,)


def test_run_bench_times_another_checkout_in_turn(tmp_path):
    """--against: the other checkout's runs alternate with these; one more case gives the ratio of the medians."""
    tiny = ["lattice.shape=[6, 12, 24]", "run.duration_h=0.3", "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10",
            "cells.monocyte.initial_count=3", "cells.microglia.initial_count=5"]  # fmt: skip
    result = run_script("bench_run.py", "--runs", "1", "--against", str(ROOT), "--keep", str(tmp_path), *[a for s in tiny for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    cases = check_contract(result.stdout, "run", "numpy")
    (against,) = [c for c in cases if c["case"].startswith("quickstart run wall time against another checkout")]
    assert against["reference"].startswith(f"the checkout {ROOT}") and len(against["ratio_each"]) == 1
    assert against["ratio"] == pytest.approx(against["reference_value"] / against["value"], rel=1e-2)
    assert {p.name for p in tmp_path.glob("*.h5")} == {"run0.h5", "against0.h5"}
    result = run_script("bench_run.py", "--against", str(tmp_path))
    assert result.returncode == 2 and "not a carabm checkout" in result.stderr.strip().splitlines()[-1]


def test_run_bench_against_imports_the_other_checkout_from_any_folder(tmp_path):
    """Run from this checkout's root (as the README does), --against must still time the other tree, not this one."""
    other = tmp_path / "other" / "carabm"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('raise SystemExit("this is the other checkout")\n')
    tiny = ["lattice.shape=[6, 12, 24]", "run.duration_h=0.1", "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10",
            "cells.monocyte.initial_count=3", "cells.microglia.initial_count=5"]  # fmt: skip
    argv = [sys.executable, str(SCRIPTS / "bench_run.py"), "--runs", "1", "--against", str(other.parent), *[a for s in tiny for a in ("--set", s)]]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode != 0 and "this is the other checkout" in result.stderr.strip().splitlines()[-1]


def test_run_bench_refuses_bad_arguments_in_one_line(tmp_path):
    result = run_script("bench_run.py", "--runs", "0")
    assert result.returncode == 2 and result.stdout == "" and "--runs must be at least 1" in result.stderr.strip().splitlines()[-1]
    result = run_script("bench_run.py", "--keep", str(tmp_path / "missing"))
    assert result.returncode == 2 and "not a folder" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("mode", ["axis", "tile"])
def test_convergence_lattices_keep_the_quickstart_tissue(mode):
    """scripts/convergence.py: the larger lattice repeats the quickstart's tissue (vessel density and spacing,
    agents per volume), so it differs only in how much of the patient it holds."""
    from carabm.engine.lattice import BLOOD, TISSUE
    from carabm.io.config import default_labels, load_config

    convergence = load_script("convergence")
    quick = load_config(ROOT / "configs" / "quickstart.yaml", check_memory=False)
    big = load_config(ROOT / "configs" / "quickstart.yaml", convergence.larger_overrides(factor=2, mode=mode), check_memory=False)
    small, large = default_labels(quick.lattice), default_labels(big.lattice)
    nx_small = round(quick.lattice.shape[2] * quick.lattice.layout.tissue_fraction)
    nx_large = round(big.lattice.shape[2] * big.lattice.layout.tissue_fraction)
    block, tile = large[0, :, :nx_large], small[0, :, :nx_small]
    assert block.shape == (2 * tile.shape[0], (2 if mode == "axis" else 1) * tile.shape[1])
    for y0 in range(0, block.shape[0], tile.shape[0]):  # every quarter (axis) or half (tile) of the block is the quickstart's
        for x0 in range(0, block.shape[1], tile.shape[1]):
            assert np.array_equal(block[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]] == BLOOD, tile == BLOOD)
    volume = 8 if mode == "axis" else 4
    assert big.cells.bcell.initial_count == volume * quick.cells.bcell.initial_count
    assert (large == TISSUE).sum() == volume * (small == TISSUE).sum()
    if mode == "tile":  # the x sequence (tissue | brain vessel | BBB | CNS) is the quickstart's, repeated along z and y
        assert np.array_equal(large[:, : small.shape[1], :], np.concatenate([small, small]))


@pytest.mark.parametrize("factor", [2, 4])
def test_convergence_finer_step_walks_as_the_quickstart_unless_told_not_to(factor):
    """--mode dt: the quickstart at dt / factor with every walker's speed held at what the quickstart's step resolves
    (one hop per step at most), so only the time discretisation differs; --mode dt-speed lets the finer step resolve more."""
    from carabm.biology.model import MOVE_CONNECTIVITY, kind_specs
    from carabm.engine.movement import mean_hop_um, move_probability
    from carabm.io.config import load_config

    convergence = load_script("convergence")
    quick = load_config(ROOT / "configs" / "quickstart.yaml", check_memory=False)

    def walked_um_min(config):  # mean path per minute of each kind's free walk
        hop = mean_hop_um(MOVE_CONNECTIVITY, config.lattice.voxel_um)
        dt = config.run.dt_min
        return {spec.name: move_probability(spec.speed_um_min, dt, config.lattice.voxel_um) * hop / dt for spec in kind_specs(config)}

    held, free = (load_config(ROOT / "configs" / "quickstart.yaml", convergence.larger_overrides(factor=factor, mode=mode), check_memory=False)
                  for mode in ("dt", "dt-speed"))  # fmt: skip
    assert held.run.dt_min == free.run.dt_min == quick.run.dt_min / factor
    assert held.run.n_steps == free.run.n_steps == factor * quick.run.n_steps
    assert walked_um_min(held) == pytest.approx(walked_um_min(quick), rel=1e-9)
    assert walked_um_min(quick)["cart"] == pytest.approx(20.0 / 6.0)  # 18 µm/min on the quickstart: one 20-µm hop per 6 min
    assert walked_um_min(free)["cart"] == pytest.approx(min(18.0, factor * 20.0 / 6.0))
    assert held.cells.bcell == quick.cells.bcell and held.lattice == quick.lattice  # nothing else changes


def test_convergence_mirror_lattice_is_the_quickstart_repeated_and_mirrored(tmp_path):
    """--mode mirror: 2x along every axis as a label mask whose every octant is the quickstart's lattice (mirrored
    along x beyond the middle), so the tissue's depth, vessels and seam with the brain vessel per volume are kept."""
    from carabm.biology.endothelium import brain_separator
    from carabm.engine.lattice import BLOOD, Lattice
    from carabm.io.config import default_labels, load_config

    convergence = load_script("convergence")
    mask = tmp_path / "labels.npy"
    quick = load_config(ROOT / "configs" / "quickstart.yaml", check_memory=False)
    big = load_config(ROOT / "configs" / "quickstart.yaml", convergence.larger_overrides(factor=2, mode="mirror", mask_file=mask),
                      check_memory=False)  # fmt: skip
    small, large = np.asarray(default_labels(quick.lattice)), np.load(mask)
    nz, ny, nx = small.shape
    assert big.lattice.layout.kind == "mask" and tuple(big.lattice.shape) == large.shape == (2 * nz, 2 * ny, 2 * nx)
    for z0 in (0, nz):
        for y0 in (0, ny):
            assert np.array_equal(large[z0 : z0 + nz, y0 : y0 + ny, :nx], small)
            assert np.array_equal(large[z0 : z0 + nz, y0 : y0 + ny, nx:], small[:, :, ::-1])
    assert big.cells.bcell.initial_count == 8 * quick.cells.bcell.initial_count
    assert big.cells.microglia.initial_count == 8 * quick.cells.microglia.initial_count
    assert big.cells.cart.min_agents == 8 * quick.cells.cart.min_agents  # the same weight per infused agent
    seam = brain_separator(Lattice(large, big.lattice.voxel_um)).sum()
    assert seam == 8 * brain_separator(Lattice(small, quick.lattice.voxel_um)).sum() > 0
    assert (large == BLOOD).sum() == 8 * (small == BLOOD).sum()
    with pytest.raises(ValueError, match="mask_file"):
        convergence.larger_overrides(factor=2, mode="mirror")


def test_exchange_dt_carabm_converges_in_the_step_and_agrees_with_the_unsplit_reference():
    """scripts/exchange_dt.py on the quickstart lattice (fields and blood pool alone): carabm's scheme gives about the same serum
    at 6- and 3-minute steps, and the unsplit implicit reference the same again (docs/model.md, 'Time step')."""
    result = run_script("exchange_dt.py", "--steps", "6", "3", "--hours", "12")  # near steady state (serum half-life 45 min)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["check"] == "exchange_dt" and [r["dt_min"] for r in line["rows"]] == [6.0, 3.0]
    coarse, fine = line["rows"]
    assert coarse["present"] > 0
    assert fine["present"] == pytest.approx(coarse["present"], rel=0.1)
    assert fine["unsplit"] == pytest.approx(coarse["unsplit"], rel=0.1)
    assert coarse["present"] == pytest.approx(coarse["unsplit"], rel=0.15)
    assert "| 6 | " in result.stdout
    bad = run_script("exchange_dt.py", "--steps", "0")
    assert bad.returncode == 2 and "--steps and --hours must be > 0" in bad.stderr
