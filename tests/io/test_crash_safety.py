"""A kill at any moment leaves a run that ``--resume`` completes to the same bits as an uninterrupted run.

The victim runs in a forked child that kills itself (SIGKILL, no clean-up) at a named
point of the output code (``CARABM_CRASH_AT``, see :mod:`carabm.io.crash`): halfway
through a time-series flush, halfway through a snapshot, inside a checkpoint write,
before the checkpoint's rename. Every such moment is tried, so the test does not depend
on timing or on how busy the machine is.
"""

import multiprocessing
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from carabm.cli import main
from carabm.io.checkpoint import checkpoint_path, read_checkpoint
from carabm.io.crash import run_and_crash
from carabm.io.runfile import Snapshots

ROOT = Path(__file__).parents[2]
QUICK = ROOT / "configs" / "quickstart.yaml"
TINY = ["lattice.shape=[6, 12, 24]", "run.duration_h=2", "run.dt_min=6", "run.snapshot_every_h=0.5", "run.checkpoint_every_h=1",
        "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10", "cells.monocyte.initial_count=3",
        "cells.microglia.initial_count=5", "run.backend=numpy", "therapies=[{drug: tocilizumab, start_h: 0.3}]"]  # fmt: skip
ARGS = [a for s in TINY for a in ("--set", s)]
# (point, how many times it is reached in the run above): 1 + 4 flushes, 1 + 4 snapshots, 1 + 2 checkpoints
POINTS = {"timeseries": 5, "snapshot": 5, "checkpoint": 3, "checkpoint_replace": 3}


_CONTEXT = multiprocessing.get_context("forkserver")  # (a plain fork of a process that used OpenMP is unsafe)
_CONTEXT.set_forkserver_preload(["carabm.cli", "carabm.simulation", "carabm.biology.model"])


def _killed_run(crash_at, *args):
    """``carabm ARGS`` in a child process that SIGKILLs itself at ``crash_at``; returns its exit code."""
    child = _CONTEXT.Process(target=run_and_crash, args=(crash_at, main, [str(a) for a in args]))
    child.start()
    child.join()
    return child.exitcode


def _datasets(path, group):
    out = {}
    with h5py.File(path, "r") as f:
        f[group].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same(a, b):
    for group in ("timeseries", "snapshots", "therapy"):
        da, db = _datasets(a, group), _datasets(b, group)
        assert da.keys() == db.keys(), group
        for key in da:
            assert da[key].dtype == db[key].dtype and np.array_equal(da[key], db[key]), f"{group}/{key}"
    sa, sb = _datasets(checkpoint_path(a), "state"), _datasets(checkpoint_path(b), "state")
    assert sa.keys() == sb.keys()
    for key in sa:
        assert np.array_equal(sa[key], sb[key]), f"checkpoint state/{key}"
    with h5py.File(a, "r") as f:
        assert f.attrs["status"] == "complete"


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    path = tmp_path_factory.mktemp("whole") / "whole.h5"
    assert main(["run", str(QUICK), "--out", str(path), *ARGS]) == 0
    return path


@pytest.mark.parametrize("crash_at", [f"{point}:{n}" for point, count in POINTS.items() for n in range(1, count + 1)])
def test_kill_at_any_point_then_resume_matches_uninterrupted_run(tmp_path, whole, crash_at, capsys):
    out = tmp_path / "run.h5"
    assert _killed_run(crash_at, "run", QUICK, "--out", out, *ARGS) == -signal.SIGKILL, f"{crash_at} was not reached"
    capsys.readouterr()
    code = main(["run", "--resume", str(out)])
    err = capsys.readouterr().err
    if not checkpoint_path(out).exists():  # killed before the first checkpoint: nothing to resume, say so
        assert code == 2 and ("no checkpoint" in err or "no such file" in err), err
        assert main(["run", str(QUICK), "--out", str(out), "--overwrite", *ARGS]) == 0
    else:
        assert code == 0, err
    _assert_same(out, whole)
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_a_killed_resume_can_be_resumed(tmp_path, whole, capsys):
    out = tmp_path / "run.h5"
    assert _killed_run("snapshot:4", "run", QUICK, "--out", out, *ARGS) == -signal.SIGKILL
    before = read_checkpoint(checkpoint_path(out)).step_index
    # killed again while --resume rebuilds the file (its first time-series write)
    assert _killed_run("timeseries:1", "run", "--resume", out) == -signal.SIGKILL
    assert read_checkpoint(checkpoint_path(out)).step_index == before
    assert main(["run", "--resume", str(out)]) == 0
    _assert_same(out, whole)


def test_resume_repairs_a_damaged_run_file(tmp_path, whole, capsys):
    """Even a run file cut short or overwritten in its middle is rebuilt from the checkpoint."""
    out = tmp_path / "run.h5"
    assert _killed_run("snapshot:4", "run", QUICK, "--out", out, *ARGS) == -signal.SIGKILL
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    assert main(["run", "--resume", str(out)]) == 0, capsys.readouterr().err
    with h5py.File(out, "r") as f:  # snapshots in the cut-off half are gone (and said so); all else is complete
        assert f.attrs["status"] == "complete"
        history = f.attrs["resume_history"]
    kept = {f"{s:06d}" for s in Snapshots(out).steps}
    missing = sorted({f"{s:06d}" for s in Snapshots(whole).steps} - kept)
    assert ("snapshots lost to damage: " + ", ".join(missing) in history) if missing else "lost" not in history, history
    ts_a, ts_b = _datasets(out, "timeseries"), _datasets(whole, "timeseries")
    assert ts_a.keys() == ts_b.keys() and all(np.array_equal(ts_a[k], ts_b[k]) for k in ts_a)
