"""The simulation: build the world from a config, advance it step by step, write outputs.

``Simulation.step`` is the one place where the order of DESIGN.md's layers is visible.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from carabm.engine.backend import Backend, get_backend
from carabm.engine.lattice import COMPARTMENTS, Lattice, default_layout, load_mask
from carabm.errors import ConfigError, InputFileError
from carabm.io.config import CYTOKINES, Config, load_config

log = logging.getLogger("carabm")



def build_lattice(config: Config) -> Lattice:
    """The lattice of a config: default layout or a label mask from a file."""
    lat = config.lattice
    if lat.layout.kind == "default":
        labels = default_layout(
            lat.shape, lat.voxel_um, lat.layout.tissue_fraction, lat.layout.vessel_radius_um,
            lat.layout.brain_vessel_width_um, lat.layout.bbb_thickness_um,
        )  # fmt: skip
    else:
        labels = load_mask(lat.layout.file, lat.layout.dataset)
        if tuple(labels.shape) != tuple(lat.shape):
            raise ConfigError(f"lattice.layout.file: mask shape {list(labels.shape)} differs from lattice.shape {list(lat.shape)}")
    try:
        return Lattice(labels, lat.voxel_um)
    except ValueError as exc:
        raise ConfigError(f"lattice.layout.file: {exc}") from exc


class Simulation:
    """One run: the backend, the lattice and the CRS/ICANS model advanced step by step."""

    def __init__(self, config: Config, backend: str | Backend | None = None):
        from carabm.biology.model import CrsModel  # noqa: PLC0415

        self.config = config
        self.backend = get_backend(backend or config.run.backend, announce=True)
        self.xp = self.backend.xp
        self.seed = config.run.seed
        self.dt_h = config.run.dt_min / 60.0
        self.lattice = build_lattice(config)
        self.model = CrsModel(config, self.lattice, self.backend)

    @property
    def step_index(self) -> int:
        """Steps taken."""
        return self.model.step_index

    @property
    def time_h(self) -> float:
        """Simulated time since infusion [h]."""
        return self.step_index * self.dt_h

    def step(self) -> None:
        """Advance one time step (the layers are listed in :meth:`CrsModel.step`)."""
        self.model.step()

    def readouts(self) -> dict[str, Any]:
        """Small host-side reductions for the time series."""
        return self.model.readouts()

    def snapshot(self) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
        """Fields, BBB integrity and agents as host arrays."""
        wanted = self.config.output.snapshot_fields or CYTOKINES
        fields = {name: self.backend.asnumpy(self.model.fields[CYTOKINES.index(name)]) for name in wanted}
        agents = self.model.agents_snapshot() if self.config.output.snapshot_agents else {}
        return fields, self.backend.asnumpy(self.model.integrity), agents


def _progress(total: int, enabled: bool | None) -> Any:
    from tqdm import tqdm  # noqa: PLC0415

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, disable=not enabled, unit="step", desc="carabm", dynamic_ncols=True)


def run(
    config: Config | str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    backend: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run a simulation to its end and write its HDF5 output; returns a summary dict."""
    from carabm.io.hdf5 import RunWriter  # noqa: PLC0415

    if not isinstance(config, Config):
        config = load_config(config)
    out = Path(out) if out is not None else Path("carabm_run.h5")
    if out.exists() and not overwrite:
        raise InputFileError(f"{out}: exists; pass --overwrite to replace it, or choose another --out")
    if not out.parent.exists():
        raise InputFileError(f"{out.parent}: output folder does not exist")
    sim = Simulation(config, backend)
    cfg = config.run
    steps = cfg.n_steps
    snapshot_every = max(1, round(cfg.snapshot_every_h / sim.dt_h))
    started = time.perf_counter()
    tmp = out.with_name(out.name + ".partial")
    with RunWriter(tmp) as writer:
        writer.write_header(config.to_yaml(), sim.seed, sim.backend.name, sim.lattice)
        rows: list[dict[str, Any]] = [sim.readouts()]
        writer.write_snapshot(0, 0.0, *sim.snapshot())
        with _progress(steps, progress) as bar:
            for _ in range(steps):
                sim.step()
                rows.append(sim.readouts())
                if sim.step_index % snapshot_every == 0 or sim.step_index == steps:
                    writer.append_timeseries(_stack(rows))
                    rows = []
                    writer.write_snapshot(sim.step_index, sim.time_h, *sim.snapshot())
                bar.update(1)
        if rows:
            writer.append_timeseries(_stack(rows))
    tmp.replace(out)
    wall = time.perf_counter() - started
    return {"out": str(out), "steps": steps, "time_h": sim.time_h, "wall_s": wall, "backend": sim.backend.name,
            "final": sim.readouts()}  # fmt: skip


def _stack(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


__all__ = ["Simulation", "run", "build_lattice", "COMPARTMENTS"]
