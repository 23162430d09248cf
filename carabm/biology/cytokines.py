"""The cytokine network's bookkeeping: field indices, transport parameters, secretion and uptake.

Cell modules call :meth:`Secretion.add` with per-cell rates in pg/cell/h; this module turns
them into the field solver's sources (pg/mL/s) and uptake (1/s) on the voxel grid.
"""

from __future__ import annotations

import math
from typing import Any

from carabm.io.config import CYTOKINES, Config

INDEX: dict[str, int] = {name: i for i, name in enumerate(CYTOKINES)}
SECONDS_PER_HOUR = 3600.0


def transport(config: Config) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per-field diffusion [um^2/s], tissue decay [1/s], serum clearance [1/s] and BBB permeability."""
    diffusion, decay, clearance, bbb = [], [], [], []
    for name in CYTOKINES:
        c = getattr(config.cytokines, name)
        diffusion.append(c.diffusion_um2_s)
        decay.append(math.log(2.0) / (c.half_life_h * SECONDS_PER_HOUR))
        clearance.append(math.log(2.0) / (c.serum_half_life_h * SECONDS_PER_HOUR))
        bbb.append(c.bbb_permeability)
    return diffusion, decay, clearance, bbb


class Secretion:
    """Accumulates one step's sources and uptake from all cells, then hands them to the solver."""

    def __init__(self, xp: Any, n_voxels: int, voxel_volume_ml: float, secretion_scale: list[float]):
        self.xp = xp
        self.n_voxels = n_voxels
        self.k = len(CYTOKINES)
        # pg/cell/h in one voxel -> pg/mL/s
        self.to_conc_rate = 1.0 / (voxel_volume_ml * SECONDS_PER_HOUR)
        self.scale = [float(s) for s in secretion_scale]
        self.sources = xp.zeros((self.k, n_voxels), dtype=xp.float32)
        self.uptake = xp.zeros((self.k, n_voxels), dtype=xp.float32)

    def clear(self) -> None:
        """Start a new step."""
        self.sources.fill(0.0)
        self.uptake.fill(0.0)

    def add(self, cytokine: str, voxels: Any, pg_per_cell_h: Any) -> None:
        """Cells at flat ``voxels`` secrete ``pg_per_cell_h`` (scalar or per cell) of ``cytokine``."""
        k = INDEX[cytokine]
        if self.scale[k] == 0.0 or voxels.size == 0:
            return
        xp = self.xp
        factor = self.to_conc_rate * self.scale[k]
        if xp.ndim(pg_per_cell_h) == 0:  # one rate for all: count cells per voxel
            counts = xp.bincount(voxels, minlength=self.n_voxels)
            self.sources[k] += (counts * (float(pg_per_cell_h) * factor)).astype(xp.float32)
        else:
            self.sources[k] += (xp.bincount(voxels, weights=pg_per_cell_h, minlength=self.n_voxels) * factor).astype(xp.float32)

    def release(self, cytokine: str, voxels: Any, pg: float, dt_s: float) -> None:
        """A one-off release of ``pg`` per cell at ``voxels`` within this step (e.g. DAMPs of lysis)."""
        self.add(cytokine, voxels, pg * SECONDS_PER_HOUR / dt_s)

    def consume(self, cytokine: str, voxels: Any, per_h: Any) -> None:
        """Receptor-mediated uptake: cells at ``voxels`` consume the field at ``per_h`` (1/h) each."""
        if voxels.size == 0:
            return
        xp = self.xp
        k = INDEX[cytokine]
        weights = xp.broadcast_to(xp.asarray(per_h, dtype=xp.float64), voxels.shape)
        self.uptake[k] += (xp.bincount(voxels, weights=weights, minlength=self.n_voxels) / SECONDS_PER_HOUR).astype(xp.float32)


def sense(fields_flat: Any, voxels: Any) -> dict[str, Any]:
    """Concentrations [pg/mL] at each cell's voxel, by cytokine name."""
    block = fields_flat[:, voxels]  # one gather for all fields
    return {name: block[i] for name, i in INDEX.items()}
