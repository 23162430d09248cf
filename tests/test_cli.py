"""The command line as users see it: exit codes, one-line errors, no tracebacks."""

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

import carabm
from carabm.io.hdf5 import Snapshots

ROOT = Path(__file__).parents[1]
QUICK = ROOT / "configs" / "quickstart.yaml"
TINY = ["--set", "lattice.shape=[6, 12, 24]", "--set", "run.duration_h=2", "--set", "cells.bcell.initial_count=50",
        "--set", "cells.macrophage.initial_count=10", "--set", "cells.monocyte.initial_count=2",
        "--set", "cells.microglia.initial_count=5"]  # fmt: skip


def carabm_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "carabm", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_info():
    result = carabm_cli("info")
    assert result.returncode == 0
    assert f"carabm {carabm.__version__}" in result.stdout
    assert "backend auto -> " in result.stdout


def test_validate_ok_and_bad(tmp_path):
    assert carabm_cli("validate", QUICK).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("cells:\n  cart: {dose: -5}\n  bcel: {}\nrun: {backend: gpu}\n")
    result = carabm_cli("validate", bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert "Traceback" not in result.stderr
    assert any("cells.cart.dose: must be >= 0, got -5" in line for line in lines)
    assert any("cells.bcel: unknown cell type 'bcel'; did you mean 'bcell'?" in line for line in lines)


def test_validate_set_errors():
    result = carabm_cli("validate", QUICK, "--set", "run.seeed=2", "--set", "lattice.shape=big")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run.seeed: unknown key" in result.stderr
    assert "lattice.shape: must be a list" in result.stderr


def test_missing_config_file():
    result = carabm_cli("run", "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "carabm run: error: nope.yaml: no such config file"


def test_cupy_backend_without_gpu_is_a_clear_error(tmp_path):
    from carabm.engine.backend import gpu_code_available

    if gpu_code_available():
        pytest.skip("a GPU is usable here")
    result = carabm_cli("run", QUICK, "--backend", "cupy", "--out", tmp_path / "x.h5", *TINY)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "backend cupy: not usable here" in result.stderr


def test_run_writes_contract_and_refuses_overwrite(tmp_path):
    out = tmp_path / "run.h5"
    result = carabm_cli("run", QUICK, "--out", out, "--backend", "numpy", *TINY)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    with h5py.File(out) as f:
        assert f.attrs["carabm_version"] == carabm.__version__
        assert f.attrs["schema_version"] == carabm.SCHEMA_VERSION
        assert f.attrs["backend"] == "numpy"
        assert "cart:" in f["config"][()].decode()
        assert f["lattice/compartment"].shape == (6, 12, 24)
        assert f["lattice/compartment"].attrs["voxel_um"] == 20.0
        assert f["timeseries/time_h"][-1] == pytest.approx(2.0)
    again = carabm_cli("run", QUICK, "--out", out, *TINY)
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr
    assert carabm_cli("run", QUICK, "--out", out, "--overwrite", "--backend", "numpy", *TINY).returncode == 0


def test_same_seed_same_placement(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    for path, seed in ((a, 3), (b, 3), (c, 4)):
        assert carabm_cli("run", QUICK, "--out", path, "--seed", seed, "--backend", "numpy", *TINY).returncode == 0
    pa, pb, pc = (Snapshots(path)[0]["agents"]["position"] for path in (a, b, c))
    assert (pa == pb).all()
    assert not (pa == pc).all()


def test_run_needs_config_or_resume():
    result = carabm_cli("run")
    assert result.returncode == 2 and "give a CONFIG to run, or --resume FILE.h5" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_writes_in_place_with_checkpoint_and_sidecar(tmp_path):
    out = tmp_path / "run.h5"
    assert carabm_cli("run", QUICK, "--out", out, "--backend", "numpy", *TINY).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5", "run.h5.ckpt", "run.xmf"]  # no .partial, no .tmp
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete"


def test_report_and_view_refuse_bad_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    for command in ("report", "view"):
        result = carabm_cli(command, foreign)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == f"carabm {command}: error: {foreign}: an HDF5 file, but not a carabm run output (no carabm_version attribute)"
