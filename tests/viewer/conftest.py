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
        labels = f["lattice/compartment"][()]
        integrity = f["snapshots/bbb_integrity"]  # [time_h, z, y, x]
        n = integrity.shape[0]
        for k in range(n):
            values = integrity[k]
            values[labels == 2] = 1.0 - (1.0 - LOWEST) * k / (n - 1)
            integrity[k] = values
        ts = f["timeseries/bbb_integrity"]
        t = f["timeseries/time_h"][()]
        ts[...] = 1.0 - (1.0 - LOWEST) * t / t[-1]
        # one macrophage of the last snapshot moved into the CNS, as if it had crossed
        agents = f["snapshots/agents"]
        first_row = int(agents["count"][:-1].sum())  # the last snapshot's agents are the last count[-1] rows
        kind = agents["type"][first_row:]
        cns = np.argwhere(labels == 3)
        agents["position"][first_row + int(np.flatnonzero(kind == 2)[0])] = cns[len(cns) // 2]
    return path
