"""The command line as users see it: exit codes, one-line errors, no tracebacks."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

import carabm
from carabm.io.runfile import Snapshots

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


def test_validate_notes_speeds_above_one_voxel_per_step():
    lines = carabm_cli("validate", QUICK).stdout.splitlines()
    notes = [line.strip() for line in lines if line.strip().startswith("note:")]
    assert len(notes) == 2, lines  # CAR-T (18 µm/min) and monocytes (5): one 20-µm hop per 6-min step is 3.3 µm/min
    assert notes[0].startswith("note: cells.cart.speed_um_min=18 is above one voxel per step (20 µm / 6 min = 3.3 µm/min)")
    assert "a shorter run.dt_min (at most 1.1 min)" in notes[0] and notes[1].startswith("note: cells.monocyte.speed_um_min=5 ")
    resolved = carabm_cli("validate", QUICK, "--set", "run.dt_min=1").stdout
    assert "valid" in resolved and "note:" not in resolved


def test_validate_set_errors():
    result = carabm_cli("validate", QUICK, "--set", "run.seeed=2", "--set", "lattice.shape=big")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run.seeed: unknown key" in result.stderr
    assert "lattice.shape: must be a list" in result.stderr


def test_validate_knows_sweep_and_calibration_files(tmp_path):
    ok = carabm_cli("validate", "cohort_axicel")
    assert ok.returncode == 0 and "valid sweep (100 members)" in ok.stdout
    ok = carabm_cli("validate", "calibration_zuma1")
    assert ok.returncode == 0 and "valid calibration (5 fitted quantities, 7 statistics" in ok.stdout
    bad = tmp_path / "sweep.yaml"
    bad.write_text(f"base: {QUICK}\naxes:\n  list:\n    cells.cart.dose: [1.0e8, -5]\n")
    result = carabm_cli("validate", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "member 1 (cells.cart.dose=-5): cells.cart.dose: must be >= 0, got -5" in result.stderr


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


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_failed_overwrite_leaves_the_old_run_as_it_was(tmp_path):
    old = tmp_path / "old.h5"
    assert carabm_cli("run", QUICK, "--out", old, "--backend", "numpy", *TINY).returncode == 0
    before = _files(tmp_path)
    assert sorted(before) == ["old.h5", "old.h5.ckpt", "old.xmf"]
    too_many = carabm_cli("run", QUICK, "--out", old, "--overwrite", *TINY, "--set", "cells.bcell.initial_count=100000")
    assert too_many.returncode == 2 and "do not fit in the" in too_many.stderr and "Traceback" not in too_many.stderr
    nx1 = carabm_cli("run", QUICK, "--out", old, "--overwrite", *TINY, "--set", "lattice.shape=[6, 12, 1]")
    assert nx1.returncode == 2 and "nx = 1 is too small" in nx1.stderr
    assert _files(tmp_path) == before  # nothing replaced, nothing deleted, nothing left behind
    assert carabm_cli("run", "--resume", old).returncode == 0  # and the old run can still be resumed


def test_out_cannot_be_the_input_config(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text(QUICK.read_text())
    result = carabm_cli("run", config, "--out", config, "--overwrite", *TINY)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--out is the HDF5 output; name it FILE.h5" in result.stderr or "is an input of this run" in result.stderr
    assert config.read_text() == QUICK.read_text()
    odd = tmp_path / "config.h5"  # an input with an output-like name
    odd.write_text(QUICK.read_text())
    result = carabm_cli("run", odd, "--out", odd, "--overwrite", *TINY)
    assert result.returncode == 2 and "is an input of this run" in result.stderr
    assert odd.read_text() == QUICK.read_text()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = carabm_cli("run", QUICK, "--out", folder / "run.h5", *TINY)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2 and "output folder is not writable" in result.stderr and "Traceback" not in result.stderr


def test_unexpected_errors_are_one_line_and_v_shows_the_traceback(monkeypatch, capsys):
    from carabm import cli

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "_cmd_info", broken)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "carabm info: error: unexpected ZeroDivisionError: division by zero (a bug in carabm; run again with -v for the traceback and report it)"
    ]
    assert cli.main(["-v", "info"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_os_errors_on_user_paths_are_one_line(monkeypatch, capsys):
    from carabm import cli

    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/out")

    monkeypatch.setattr(cli, "_cmd_info", denied)
    assert cli.main(["info"]) == 2
    assert capsys.readouterr().err.strip() == (
        "carabm info: error: /data/out: Permission denied; check the permissions of that file or folder, or choose another location"
    )


def test_report_into_a_closed_pipe_is_quiet(tmp_path):
    run = tmp_path / "run.h5"
    assert carabm_cli("run", QUICK, "--out", run, "--backend", "numpy", *TINY).returncode == 0
    # like `carabm report RUN.h5 | head`: the reader is gone before the report is printed
    proc = subprocess.Popen([sys.executable, "-m", "carabm", "report", str(run), "--out", str(tmp_path / "rep")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_ctrl_c_leaves_no_temp_file_and_says_how_to_continue(tmp_path):
    out = tmp_path / "run.h5"
    long = [*TINY, "--set", "run.duration_h=500", "--set", "run.checkpoint_every_h=0.1", "--backend", "numpy"]
    # the child gets the default SIGINT action: a suite started in the background (cmd &) hands its children SIGINT
    # ignored, and a run that ignores Ctrl-C would go on for its 500 h
    proc = subprocess.Popen([sys.executable, "-m", "carabm", "run", str(QUICK), "--out", str(out), *long],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    ckpt = tmp_path / "run.h5.ckpt"
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # at some moment after the first checkpoint (often inside a checkpoint write)
    _, err = proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"carabm run: interrupted; continue it with: carabm run --resume {out}"
    assert not list(tmp_path.glob("*.tmp")), sorted(p.name for p in tmp_path.iterdir())
