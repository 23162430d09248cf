"""Scenario runs shared by the validation tests: the real model at reduced size, run once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carabm.io.config import load_config
from carabm.simulation import Simulation

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
#: reduced but faithful: the quickstart patient, 12 days, 10-minute steps
REDUCED = ["run.duration_h=288", "run.dt_min=10"]

SCENARIOS = {
    "no_cart": ["cells.cart.dose=0"],
    "standard": [],
    "depletion": ["therapies=[{drug: monocyte_depletion, start_h: 0}, {drug: macrophage_depletion, start_h: 0}]"],
    "anakinra": ["therapies=[{drug: anakinra, start_h: 0, every_h: 24, max_doses: 10}]"],
    "lenzilumab": ["therapies=[{drug: lenzilumab, start_h: 0, every_h: 24, max_doses: 10}]"],
}


def run_series(overrides: list[str]) -> dict[str, np.ndarray]:
    """Run the model and return its time series as arrays keyed like the HDF5 names."""
    config = load_config(QUICKSTART, REDUCED + overrides)
    sim = Simulation(config, "numpy")
    rows = [sim.readouts()]
    for _ in range(config.run.n_steps):
        sim.step()
        rows.append(sim.readouts())
    return {key: np.array([row.get(key, 0.0) for row in rows], dtype=float) for key in rows[-1]}


@pytest.fixture(scope="session")
def scenario():
    """``scenario(name)`` -> time series of that scenario (computed once per session)."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def get(name: str) -> dict[str, np.ndarray]:
        if name not in cache:
            cache[name] = run_series(SCENARIOS[name])
        return cache[name]

    return get
