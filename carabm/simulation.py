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
from carabm.engine.placement import choose_voxels
from carabm.errors import ConfigError, InputFileError
from carabm.io.config import CELL_TYPES, Config, load_config

log = logging.getLogger("carabm")

#: where each cell type starts (compartment name)
HOME_COMPARTMENT = {"cart": "blood", "bcell": "tissue", "macrophage": "tissue", "monocyte": "tissue", "microglia": "cns"}


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
    """One run's state and its step function."""

    def __init__(self, config: Config, backend: str | Backend | None = None):
        self.config = config
        self.backend = get_backend(backend or config.run.backend, announce=True)
        self.xp = self.backend.xp
        self.seed = config.run.seed
        self.dt_h = config.run.dt_min / 60.0
        self.step_index = 0
        self.lattice = build_lattice(config)
        self.positions = self._place_initial_cells()

    @property
    def time_h(self) -> float:
        """Simulated time since infusion [h]."""
        return self.step_index * self.dt_h

    def _place_initial_cells(self) -> dict[str, Any]:
        xp = self.xp
        occupied = np.zeros(self.lattice.n_voxels, dtype=bool)
        positions: dict[str, Any] = {}
        for cell in CELL_TYPES:
            count = getattr(self.config.cells, cell).initial_count
            compartment = HOME_COMPARTMENT[cell]
            free = self.lattice.flat_indices(compartment)
            free = free[~occupied[free]]
            if count > free.size:
                raise ConfigError(
                    f"cells.{cell}.initial_count: {count} cells do not fit in the {free.size} free "
                    f"{compartment} voxels of this lattice; lower the count or enlarge lattice.shape"
                )
            chosen = choose_voxels(xp, free, count, self.seed, f"place:{cell}")
            occupied[self.backend.asnumpy(chosen)] = True
            positions[cell] = xp.stack(xp.unravel_index(chosen, self.lattice.shape), axis=1).astype(xp.int32)
        return positions

    def step(self) -> None:
        """Advance one time step: sense, decide, move, secrete, fields, BBB, readouts."""
        self.step_index += 1

    def readouts(self) -> dict[str, np.ndarray]:
        """Small host-side reductions for the time series."""
        row: dict[str, Any] = {"time_h": self.time_h}
        for cell in CELL_TYPES:
            row[f"counts/{cell}"] = int(self.positions[cell].shape[0])
        row["tumor_burden"] = int(self.positions["bcell"].shape[0])
        return row

    def snapshot_agents(self) -> dict[str, np.ndarray]:
        """Agents for a snapshot (host arrays)."""
        pos = [self.backend.asnumpy(self.positions[c]) for c in CELL_TYPES]
        types = [np.full(len(p), i, dtype=np.uint8) for i, p in enumerate(pos)]
        position = np.concatenate(pos) if pos else np.zeros((0, 3), np.int32)
        return {"id": np.arange(len(position), dtype=np.int64), "position": position.astype(np.int32), "type": np.concatenate(types)}


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
        writer.write_snapshot(0, 0.0, {}, None, sim.snapshot_agents())
        with _progress(steps, progress) as bar:
            for _ in range(steps):
                sim.step()
                rows.append(sim.readouts())
                if sim.step_index % snapshot_every == 0 or sim.step_index == steps:
                    writer.append_timeseries(_stack(rows))
                    rows = []
                    writer.write_snapshot(sim.step_index, sim.time_h, {}, None, sim.snapshot_agents())
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
