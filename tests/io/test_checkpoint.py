"""Checkpoint/restart: complete state, atomic files, bit-identical resume (also after SIGKILL), branches."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from carabm.errors import InputFileError
from carabm.io.checkpoint import (
    CheckpointError,
    _write_tree_v2,
    checkpoint_path,
    model_state,
    read_checkpoint,
    restore_model_state,
    write_checkpoint,
)
from carabm.io.config import load_config
from carabm.simulation import Simulation, run

ROOT = Path(__file__).parents[2]
QUICK = ROOT / "configs" / "quickstart.yaml"
SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=150", "cells.macrophage.initial_count=30",
         "cells.monocyte.initial_count=5", "cells.microglia.initial_count=10"]  # fmt: skip


def small_config(*extra, backend="numpy"):
    return load_config(QUICK, SMALL + [f"run.backend={backend}", *extra])


def state_arrays(model):
    """Every leaf of the model's state tree, flattened to {path: value}."""
    out = {}

    def walk(tree, path):
        if "value" in tree:
            out[path] = tree["value"]
        for key, sub in tree.get("items", {}).items():
            walk(sub, f"{path}/{key}")
        if "state" in tree:
            walk(tree["state"], f"{path}/state")

    walk(model_state(model), "")
    return out


def assert_same_state(a, b):
    sa, sb = state_arrays(a), state_arrays(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        x, y = np.asarray(sa[key]), np.asarray(sb[key])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), key


def test_restore_then_step_is_bit_identical(tmp_path):
    config = small_config()
    reference = Simulation(config)
    for _ in range(15):
        reference.step()
    reference.model.effects.cart_signalling = 0.25  # therapy state must travel too
    reference.model.effects.free["cns"]["IL6"] = 0.5
    path = write_checkpoint(tmp_path / "a.ckpt", reference.model, run_id="r", timeseries_rows=16, config_yaml=config.to_yaml(),
                            backend="numpy")  # fmt: skip
    assert not (tmp_path / "a.ckpt.tmp").exists()
    resumed = Simulation(config)
    restore_model_state(resumed.model, read_checkpoint(path).state)
    assert resumed.step_index == 15 and resumed.model.effects.free["cns"]["IL6"] == 0.5
    assert_same_state(reference.model, resumed.model)
    resumed.model.store.check()
    for _ in range(10):
        reference.step()
        resumed.step()
        assert reference.readouts() == resumed.readouts()
    assert_same_state(reference.model, resumed.model)


def test_each_part_restores_its_own_state(tmp_path):
    """The model's state is its parts' own (store, blood, circulation, effects, therapy), restorable without a file."""
    config = small_config("therapies=[{drug: anakinra, start_h: 0}]")
    sim = Simulation(config)
    for _ in range(4):
        sim.step()
    state = sim.model.checkpoint_state()
    other = Simulation(config)
    other.model.restore_checkpoint_state(state)
    assert_same_state(sim.model, other.model)
    other.model.store.check()
    assert other.model.therapy.events == sim.model.therapy.events and other.model.therapy.plasma["anakinra"].conc_ug_ml > 0
    sim.step()
    other.step()
    assert sim.readouts() == other.readouts()


def test_state_must_be_plain_data(monkeypatch):
    sim = Simulation(small_config())
    monkeypatch.setattr(sim.model.effects, "checkpoint_state", lambda: {"drug": object()})  # not data: fails loudly, named
    with pytest.raises(CheckpointError, match=r"model\['effects'\]\['drug'\]: cannot checkpoint a object"):
        model_state(sim.model)


def test_old_checkpoint_format_is_refused_in_one_line(tmp_path):
    sim = Simulation(small_config())
    path = write_checkpoint(tmp_path / "old.ckpt", sim.model, run_id="r", timeseries_rows=1, config_yaml="", backend="numpy")
    with h5py.File(path, "a") as f:
        f.attrs["carabm_checkpoint"] = 1  # the layout before each part saved its own state
    with pytest.raises(InputFileError, match="checkpoint format 1 .* cannot be read by this carabm") as err:
        read_checkpoint(path)
    assert "\n" not in str(err.value) and "--overwrite" in str(err.value)


def test_format_2_checkpoints_still_read_and_resume(tmp_path):
    """Format 3 (JSON tree + arrays, stacked time series) is only faster: a format-2 file reads back the same."""
    config = small_config()
    sim = Simulation(config)
    for _ in range(4):
        sim.step()
    series = {"time_h": np.arange(5) * 0.1, "counts/cart": np.arange(5, dtype=np.int64), "serum/IL6": np.linspace(0.0, 1.0, 5)}
    output = {"attrs": {"run_id": "r", "seed": 1}, "timeseries": series, "snapshots": ["000000"]}
    new = write_checkpoint(tmp_path / "v3.ckpt", sim.model, run_id="r", timeseries_rows=5, config_yaml=config.to_yaml(),
                           backend="numpy", output=output)  # fmt: skip
    old = tmp_path / "v2.ckpt"
    shutil.copy(new, old)
    with h5py.File(old, "a") as f:  # the same checkpoint in format 2's layout
        f.attrs["carabm_checkpoint"] = 2
        del f["state"]
        _write_tree_v2(f.create_group("state"), model_state(sim.model))
        del f["output/series"]
        for name, values in series.items():
            f.create_dataset(f"output/timeseries/{name}", data=values)
    a, b = read_checkpoint(new), read_checkpoint(old)
    assert list(a.output["timeseries"]) == list(series)  # the columns' order is kept
    for ckpt in (a, b):
        assert ckpt.output["timeseries"].keys() == series.keys()
        for name, values in series.items():
            assert ckpt.output["timeseries"][name].dtype == values.dtype and np.array_equal(ckpt.output["timeseries"][name], values)
        other = Simulation(config)
        restore_model_state(other.model, ckpt.state)
        assert_same_state(sim.model, other.model)
        assert type(other.model.step_index) is int and other.model.step_index == 4
    sim.step()
    other.step()
    assert sim.readouts() == other.readouts()


def test_checkpoint_rejects_another_lattice(tmp_path):
    sim = Simulation(small_config())
    write_checkpoint(tmp_path / "c.ckpt", sim.model, run_id="r", timeseries_rows=1, config_yaml="", backend="numpy")
    other = Simulation(small_config("lattice.shape=[6, 16, 32]"))
    with pytest.raises(CheckpointError, match="lattice.shape"):
        restore_model_state(other.model, read_checkpoint(tmp_path / "c.ckpt").state)


@pytest.mark.gpu
def test_checkpoint_moves_between_backends(tmp_path):
    cpu = Simulation(small_config())
    for _ in range(5):
        cpu.step()
    write_checkpoint(tmp_path / "x.ckpt", cpu.model, run_id="r", timeseries_rows=6, config_yaml="", backend="numpy")
    gpu = Simulation(small_config(backend="cupy"))
    restore_model_state(gpu.model, read_checkpoint(tmp_path / "x.ckpt").state)
    assert_same_state(cpu.model, gpu.model)
    gpu.step()
    gpu.model.store.check()


# ----------------------------------------------------------------------------- the command line

CLI_SET = [f"--set={s}" for s in SMALL] + ["--set=run.duration_h=12", "--set=run.checkpoint_every_h=3",
                                           "--set=run.snapshot_every_h=2", "--backend=numpy"]  # fmt: skip


def cli(*args):
    return [sys.executable, "-m", "carabm", *map(str, args)]


class Result:
    def __init__(self, returncode, captured):
        self.returncode, self.stdout, self.stderr = returncode, captured.out, captured.err


def main(capsys, *args):
    """The real command line, in this process (faster than a subprocess)."""
    from carabm.cli import main as carabm_main

    capsys.readouterr()
    code = carabm_main([str(a) for a in args])
    return Result(code, capsys.readouterr())


def _datasets(path, group):
    out = {}
    with h5py.File(path) as f:
        f[group].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same_group(a, b, group):
    da, db = _datasets(a, group), _datasets(b, group)
    assert da.keys() == db.keys(), group
    for key in da:
        if isinstance(da[key], bytes):  # a text (the checkpoint's tree of plain values)
            assert da[key] == db[key], f"{group}/{key}"
        else:
            assert da[key].dtype == db[key].dtype and np.array_equal(da[key], db[key]), f"{group}/{key}"


def _checkpoint_time(path):
    try:
        with h5py.File(path, "r") as f:
            return float(f.attrs["time_h"])
    except (OSError, KeyError):
        return -1.0


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, capsys):
    killed, whole = tmp_path / "killed.h5", tmp_path / "whole.h5"
    uninterrupted = subprocess.Popen(cli("run", QUICK, "--out", whole, *CLI_SET), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = subprocess.Popen(cli("run", QUICK, "--out", killed, *CLI_SET), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _checkpoint_time(checkpoint_path(killed)) < 3.0 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # a few steps past the checkpoint: rows and perhaps a snapshot to truncate
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed; lengthen run.duration_h"
    assert uninterrupted.wait() == 0, uninterrupted.stderr.read()

    with h5py.File(killed) as f:  # a killed run leaves a readable file
        assert f.attrs["status"] == "running" and f["timeseries/time_h"].shape[0] > 0
    ckpt_time = read_checkpoint(checkpoint_path(killed)).time_h
    assert 3.0 <= ckpt_time < 12.0

    resumed = subprocess.run(cli("run", "--resume", killed), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_group(killed, whole, "timeseries")
    _assert_same_group(killed, whole, "snapshots")
    with h5py.File(killed) as f:
        assert f.attrs["status"] == "complete" and "resumed at step" in f.attrs["resume_history"]
    # the final state (the end-of-run checkpoints) is identical too
    a, b = read_checkpoint(checkpoint_path(killed)), read_checkpoint(checkpoint_path(whole))
    assert a.step_index == b.step_index == 120
    _assert_same_group(checkpoint_path(killed), checkpoint_path(whole), "state")
    again = main(capsys, "run", "--resume", killed)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr


def test_resume_branch_and_its_errors(tmp_path, capsys):
    parent = tmp_path / "parent.h5"
    config = small_config("run.duration_h=3", "run.checkpoint_every_h=2", "run.snapshot_every_h=1")
    run(config, out=parent)
    changed = ["--set", "cells.cart.kill_rate_per_h=0.1", "--set", "run.duration_h=5"]
    same_file = main(capsys, "run", "--resume", parent, *changed)
    assert same_file.returncode == 2 and "starts a branch; give --out NEW.h5" in same_file.stderr
    assert len(same_file.stderr.strip().splitlines()) == 1

    branch = tmp_path / "branch.h5"
    made = main(capsys, "run", "--resume", parent, *changed, "--out", branch)
    assert made.returncode == 0, made.stderr
    with h5py.File(parent) as p, h5py.File(branch) as b:
        assert b.attrs["parent_run"] == str(parent.resolve()) and b.attrs["branch_time_h"] == 3.0
        assert "cells.cart.kill_rate_per_h" in b.attrs["branch_changes"]
        rows = p["timeseries/time_h"].shape[0]
        np.testing.assert_array_equal(b["timeseries/serum/IL6"][:rows], p["timeseries/serum/IL6"][()])
        assert b["timeseries/time_h"][-1] == pytest.approx(5.0) and "kill_rate_per_h: 0.1" in b["config"][()].decode()
        assert b["snapshots/step"][()].tolist() == [30, 40, 50]
    exists = main(capsys, "run", "--resume", parent, *changed, "--out", branch)
    assert exists.returncode == 2 and "exists; pass --overwrite" in exists.stderr

    lattice = main(capsys, "run", "--resume", parent, "--set", "lattice.shape=[6,16,32]", "--out", tmp_path / "l.h5")
    assert lattice.returncode == 2 and "cannot change lattice.shape" in lattice.stderr

    checkpoint_path(parent).unlink()
    no_ckpt = main(capsys, "run", "--resume", parent)
    assert no_ckpt.returncode == 2 and "no checkpoint" in no_ckpt.stderr and "Traceback" not in no_ckpt.stderr


def test_resume_refuses_bad_files(tmp_path, capsys):
    text = tmp_path / "x.h5"
    text.write_text("hello")
    for path, expected in ((tmp_path / "none.h5", "no such file"), (text, "not an HDF5 file")):
        result = main(capsys, "run", "--resume", path)
        assert result.returncode == 2 and expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(InputFileError, match="another run"):
        a, b = tmp_path / "a.h5", tmp_path / "b.h5"
        config = small_config("run.duration_h=0.2")
        run(config, out=a)
        run(config, out=b)
        checkpoint_path(a).replace(checkpoint_path(b))
        run(None, resume=b)


def _events(path):
    with h5py.File(path) as f:
        if "therapy/events" not in f:
            return []
        g = f["therapy/events"]
        return [(float(t), d.decode()) for t, d in zip(g["time_h"][()], g["drug"][()])]


def test_branches_apply_their_own_therapies(tmp_path):
    """A branch's therapies come from the branch's config; drugs already given stay in the body."""
    parent = tmp_path / "parent.h5"
    run(small_config("run.duration_h=2", "therapies=[{drug: anakinra, start_h: 0}]"), out=parent)
    branch = {}
    for name, therapies in {
        "same": "[{drug: anakinra, start_h: 0}]",
        "added": "[{drug: anakinra, start_h: 0}, {drug: macrophage_depletion, start_h: 0}]",
        "removed": "[]",
        "changed": "[{drug: anakinra, start_h: 0, dose_mg: 300}]",
    }.items():
        branch[name] = tmp_path / f"{name}.h5"
        run(small_config("run.duration_h=3", f"therapies={therapies}"), out=branch[name], resume=parent)
    assert _events(parent) == [(0.0, "anakinra")]
    assert _events(branch["same"]) == [(0.0, "anakinra")]  # not given again
    assert _events(branch["added"]) == [(0.0, "anakinra"), (2.0, "macrophage_depletion")]  # past start_h: at the branch point
    assert _events(branch["removed"]) == [(0.0, "anakinra")]
    assert _events(branch["changed"]) == [(0.0, "anakinra"), (2.0, "anakinra")]  # a changed therapy is a new one
    with h5py.File(branch["same"]) as same, h5py.File(branch["removed"]) as removed, h5py.File(branch["added"]) as added:
        # anakinra given at 0 h keeps decaying in every branch, scheduled or not
        np.testing.assert_array_equal(same["timeseries/drug/anakinra"][()], removed["timeseries/drug/anakinra"][()])
        assert added["timeseries/drug/macrophage_depletion"][-1] > 0
        assert not np.array_equal(added["timeseries/counts/macrophage"][()], same["timeseries/counts/macrophage"][()])
        assert added.attrs["branch_changes"] == "run.duration_h, therapies"


def test_triggers_see_the_readouts_of_the_step_before_a_restore():
    """A triggered therapy due at the first step after a restore is given then, as in an uninterrupted run."""
    config = small_config("run.dt_min=6", "therapies=[{drug: tocilizumab, when: 'time_h >= 0.5'}]")
    reference = Simulation(config)
    for _ in range(5):  # the readouts of step 5 say time_h = 0.5: the dose is due at step 6 (which starts at 0.5 h)
        reference.step()
    resumed = Simulation(config)
    resumed.model.restore_checkpoint_state(reference.model.checkpoint_state())
    reference.step()
    resumed.step()
    assert [e[:2] for e in reference.model.therapy.events] == [(0.5, "tocilizumab")]
    assert resumed.model.therapy.events == reference.model.therapy.events
