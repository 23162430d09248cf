"""Simulation loop: when snapshots are taken (per-phase schedule, BBB trigger)."""

from pathlib import Path

import h5py
import numpy as np
import pytest

import carabm
from carabm.errors import ConfigError
from carabm.io.config import load_config
from carabm.io.runfile import Snapshots

ROOT = Path(__file__).parents[1]
SMALL = ["lattice.shape=[6, 12, 24]", "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10",
         "cells.monocyte.initial_count=2", "cells.microglia.initial_count=5", "run.backend=numpy", "run.checkpoint_every_h=24"]  # fmt: skip


def small_config(*extra):
    return load_config(ROOT / "configs" / "quickstart.yaml", SMALL + list(extra))


def test_interval_follows_the_phases_then_the_default_and_the_bbb_trigger_shortens_it():
    output = small_config("output.snapshot_schedule=[{until_h: 24, every_h: 2}, {until_h: 48, every_h: 6}]",
                          "output.snapshot_bbb_below=0.9", "output.snapshot_bbb_every_h=1").output  # fmt: skip
    assert [output.snapshot_every_h_at(t, 1.0, 24.0) for t in (0.0, 23.9, 24.0, 47.9, 48.0, 300.0)] == [2, 2, 6, 6, 24, 24]
    assert [output.snapshot_every_h_at(t, 0.85, 24.0) for t in (0.0, 30.0, 300.0)] == [1, 1, 1]
    assert output.snapshot_every_h_at(300.0, 0.9, 24.0) == 24  # "below" is strict
    assert small_config().output.snapshot_every_h_at(5.0, 0.1, 24.0) == 24  # no trigger by default


def test_schedule_phases_must_rise():
    with pytest.raises(ConfigError, match="until_h must rise"):
        small_config("output.snapshot_schedule=[{until_h: 48, every_h: 6}, {until_h: 24, every_h: 2}]")


def test_a_run_snapshots_per_phase(tmp_path):
    config = small_config("run.duration_h=3", "run.snapshot_every_h=2", "output.snapshot_schedule=[{until_h: 1, every_h: 0.5}]")
    carabm.run(config, out=tmp_path / "phases.h5")
    np.testing.assert_allclose(Snapshots(tmp_path / "phases.h5").times_h, [0.0, 0.5, 2.0, 3.0])


def test_a_run_snapshots_more_often_while_the_bbb_trigger_holds(tmp_path):
    config = small_config("run.duration_h=3", "run.snapshot_every_h=2", "output.snapshot_bbb_below=0.99999",
                          "output.snapshot_bbb_every_h=0.5", "endothelium.damage_per_h=5", "endothelium.activation_hill=0.5",
                          "endothelium.activation_half_max_pg_ml={IL6: 1e-6, IL1b: 1e-6, TNFa: 1e-6, IFNg: 1e-6}")  # fmt: skip
    carabm.run(config, out=tmp_path / "bbb.h5")
    with h5py.File(tmp_path / "bbb.h5") as f:
        integrity = f["timeseries/bbb_integrity"][()]
    steps = np.arange(len(integrity))
    expected = (steps % 20 == 0) | ((integrity < 0.99999) & (steps % 5 == 0)) | (steps == steps[-1])
    taken = Snapshots(tmp_path / "bbb.h5").steps
    np.testing.assert_array_equal(taken, steps[expected])
    assert set(taken) - {0, 20, 30}, "the trigger never held: make the BBB fall faster in this test"


def test_a_continued_run_takes_the_snapshots_of_an_uninterrupted_one(tmp_path):
    schedule = ["run.snapshot_every_h=1", "run.checkpoint_every_h=1", "output.snapshot_schedule=[{until_h: 3, every_h: 0.3}]"]
    carabm.run(small_config("run.duration_h=4", *schedule), out=tmp_path / "whole.h5")
    carabm.run(small_config("run.duration_h=2", *schedule), out=tmp_path / "first.h5")
    carabm.run(small_config("run.duration_h=4", *schedule), out=tmp_path / "continued.h5", resume=tmp_path / "first.h5")
    whole, continued = Snapshots(tmp_path / "whole.h5").times_h, Snapshots(tmp_path / "continued.h5").times_h
    assert continued[0] == pytest.approx(2.0)  # the branch starts with a snapshot of its starting point
    np.testing.assert_allclose(continued[1:], whole[whole > 2.0 + 1e-9])
    np.testing.assert_allclose(whole, [0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4, 2.7, 3.0, 4.0], atol=1e-9)
