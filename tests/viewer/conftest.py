"""Shared fixtures of the viewer tests: one tiny real run (3 snapshots) and a copy of it whose BBB is breached."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from carabm.cli import main

TINY_RUN = [
    "--set", "lattice.shape=[6,16,30]", "--set", "run.duration_h=6", "--set", "run.snapshot_every_h=3",
    "--set", "cells.bcell.initial_count=300", "--set", "cells.macrophage.initial_count=60",
    "--set", "cells.monocyte.initial_count=6", "--set", "cells.microglia.initial_count=30",
]  # fmt: skip
#: the lowest BBB integrity of :func:`breached_run`
LOWEST = 0.65
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render") / "tiny.h5"
    assert main(["run", str(CONFIGS / "quickstart.yaml"), "--out", str(out), *TINY_RUN]) == 0
    return out


@pytest.fixture
def breached_run(tiny_run: Path, tmp_path: Path) -> Path:
    """The tiny run with its BBB falling linearly to ``LOWEST`` over the snapshots and the time series (as a breach would)."""
    path = tmp_path / "breached.h5"
    shutil.copy(tiny_run, path)
    with h5py.File(path, "r+") as f:
        bbb = f["lattice/compartment"][()] == 2
        names = sorted(f["snapshots"])
        for k, name in enumerate(names):
            data = f[f"snapshots/{name}/bbb_integrity"]
            values = data[()]
            values[bbb] = 1.0 - (1.0 - LOWEST) * k / (len(names) - 1)
            data[...] = values
        ts = f["timeseries/bbb_integrity"]
        t = f["timeseries/time_h"][()]
        ts[...] = 1.0 - (1.0 - LOWEST) * t / t[-1]
        # one macrophage of the last snapshot moved into the CNS, as if it had crossed
        agents = f[f"snapshots/{names[-1]}/agents"]
        position, kind = agents["position"][()], agents["type"][()]
        cns = np.argwhere(f["lattice/compartment"][()] == 3)
        position[np.flatnonzero(kind == 2)[0]] = cns[len(cns) // 2]
        agents["position"][...] = position
    return path
