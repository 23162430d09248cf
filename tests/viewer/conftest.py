"""Shared fixture of the viewer tests: one tiny real run (3 snapshots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carabm.cli import main

TINY_RUN = [
    "--set", "lattice.shape=[6,16,30]", "--set", "run.duration_h=6", "--set", "run.snapshot_every_h=3",
    "--set", "cells.bcell.initial_count=300", "--set", "cells.macrophage.initial_count=60",
    "--set", "cells.monocyte.initial_count=6", "--set", "cells.microglia.initial_count=30",
]  # fmt: skip
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render") / "tiny.h5"
    assert main(["run", str(CONFIGS / "quickstart.yaml"), "--out", str(out), *TINY_RUN]) == 0
    return out
