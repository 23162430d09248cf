"""The cytokine network's bookkeeping: field indices, transport parameters, secretion and uptake.

Cell modules call :meth:`Secretion.add` (one rate for the selected agents) or
:meth:`Secretion.add_each` (a rate per agent) in pg/cell/h with every agent's voxel and a
mask; this module turns them into the field solver's sources (pg/mL/s) and uptake (1/s) on
the voxel grid by device scatters (:mod:`carabm.engine.scatter`), without host reads.
"""

from __future__ import annotations

import math
from typing import Any

from carabm.engine import scatter
from carabm.io.catalog import CATALOG, Cytokine, register_cytokine
from carabm.io.config import Config

SECONDS_PER_HOUR = 3600.0

# The built-in cytokine fields, in field order. Diffusion from protein size (Stokes-Einstein,
# assumed); tissue half-life: Francis & Palsson 1997 (time constant 10-30 min); serum
# half-lives: assumed, within the reported 0.5-2 h; intact-BBB conductance 0.0005, assumed
# (CSF levels ~1-2 % of serum at rest). Healthy serum baselines (``baseline_pg_ml``): IL-6
# 3 pg/mL, between the population median 1.5 pg/mL (CoLaus, Marques-Vidal et al., PLoS One
# 2011) and the pooled mean 5.2 pg/mL of 57 studies (Said et al., J Med Virol 2021); IL-1β
# 1 pg/mL and TNF-α 3 pg/mL (CoLaus medians 1.2 and 2.9 pg/mL); GM-CSF and IL-2 0
# (undetectable in 144 healthy donors, Biancotto et al., PLoS One 2013); IL-10 and IFN-γ
# 2 pg/mL, assumed (low single-digit pg/mL, mostly below ELISA detection in healthy donors);
# MCP-1 and DAMP 0, assumed (MCP-1 is a few hundred pg/mL in healthy serum, but the monocyte
# recruitment half-maximum is set against tissue levels above that background).
for _cytokine in (
    Cytokine("IL6", "interleukin-6", 100.0, 0.25, 0.75, baseline_pg_ml=3.0),
    Cytokine("IL1b", "interleukin-1 beta", 110.0, 0.25, 0.5, baseline_pg_ml=1.0),
    Cytokine("IFNg", "interferon gamma", 80.0, 0.25, 1.0, baseline_pg_ml=2.0),
    Cytokine("TNFa", "tumour necrosis factor alpha", 70.0, 0.25, 0.5, baseline_pg_ml=3.0),
    Cytokine("GMCSF", "granulocyte-macrophage colony-stimulating factor", 100.0, 0.25, 1.0),
    Cytokine("MCP1", "monocyte chemoattractant protein 1 (CCL2)", 130.0, 0.5, 1.0),
    Cytokine("IL10", "interleukin-10", 80.0, 0.5, 2.0, baseline_pg_ml=2.0),
    Cytokine("IL2", "interleukin-2", 110.0, 0.25, 0.5),
    Cytokine("DAMP", "damage-associated molecular patterns (HMGB1-like surrogate)", 100.0, 0.5, 1.0),
):
    register_cytokine(_cytokine)


def field_index() -> dict[str, int]:
    """Field index of each registered cytokine (its row in the ``fields`` array)."""
    return {name: i for i, name in enumerate(CATALOG.cytokines)}


def baselines(config: Config) -> list[float]:
    """Per-field healthy serum level [pg/mL] (``cytokines.<name>.baseline_pg_ml``)."""
    return [getattr(config.cytokines, name).baseline_pg_ml for name in CATALOG.cytokines]


def transport(config: Config) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """Per-field diffusion [um^2/s], tissue decay [1/s], serum clearance [1/s], BBB permeability and vessel wall permeability [um/s]."""
    diffusion, decay, clearance, bbb, wall = [], [], [], [], []
    for name in CATALOG.cytokines:
        c = getattr(config.cytokines, name)
        diffusion.append(c.diffusion_um2_s)
        decay.append(math.log(2.0) / (c.half_life_h * SECONDS_PER_HOUR))
        clearance.append(math.log(2.0) / (c.serum_half_life_h * SECONDS_PER_HOUR))
        bbb.append(c.bbb_permeability)
        wall.append(c.vessel_permeability_um_s)
    return diffusion, decay, clearance, bbb, wall


class Secretion:
    """Accumulates one step's sources and uptake from all cells, then hands them to the solver."""

    def __init__(self, xp: Any, n_voxels: int, voxel_volume_ml: float, secretion_scale: list[float]):
        self.xp = xp
        self.n_voxels = n_voxels
        self.index = field_index()
        self.k = len(self.index)
        # pg/cell/h in one voxel -> pg/mL/s
        self.to_conc_rate = 1.0 / (voxel_volume_ml * SECONDS_PER_HOUR)
        self.scale = [float(s) for s in secretion_scale]
        self.sources = xp.zeros((self.k, n_voxels), dtype=xp.float32)
        self.uptake = xp.zeros((self.k, n_voxels), dtype=xp.float32)

    def clear(self) -> None:
        """Start a new step."""
        self.sources.fill(0.0)
        self.uptake.fill(0.0)

    def add(self, cytokine: str, voxels: Any, cells: Any, pg_per_cell_h: float) -> None:
        """Agents where ``cells`` (bool ``[n]``) is set each secrete ``pg_per_cell_h`` of ``cytokine``.

        ``voxels``: flat voxel of every agent ``[n]``. No host read: the sum per voxel is a
        device scatter (:func:`carabm.engine.scatter.add_counts`).
        """
        k = self.index[cytokine]
        if self.scale[k] == 0.0:
            return
        factor = self.to_conc_rate * self.scale[k]
        scatter.add_counts(self.sources[k], voxels, cells, float(pg_per_cell_h) * factor)

    def add_each(self, cytokine: str, voxels: Any, pg_per_cell_h: Any) -> None:
        """Every agent secretes its own ``pg_per_cell_h`` (float ``[n]``, 0 for agents that secrete nothing)."""
        k = self.index[cytokine]
        if self.scale[k] == 0.0:
            return
        factor = self.to_conc_rate * self.scale[k]
        scatter.add_weights(self.sources[k], voxels, pg_per_cell_h, factor)

    def add_voxels(self, cytokine: str, voxels: Any, pg_per_voxel_h: Any) -> None:
        """A voxel-level population (e.g. astrocytes) secretes ``pg_per_voxel_h`` (float ``[m]``) into distinct ``voxels`` ``[m]``."""
        k = self.index[cytokine]
        if self.scale[k] == 0.0:
            return
        self.sources[k, voxels] += (pg_per_voxel_h * (self.to_conc_rate * self.scale[k])).astype(self.sources.dtype)

    def release(self, cytokine: str, voxels: Any, cells: Any, pg: float, dt_s: float) -> None:
        """A one-off release of ``pg`` per agent where ``cells`` is set, within this step (e.g. DAMPs of lysis)."""
        self.add(cytokine, voxels, cells, pg * SECONDS_PER_HOUR / dt_s)

    def consume(self, cytokine: str, voxels: Any, cells: Any, per_h: Any) -> None:
        """Receptor-mediated uptake: agents where ``cells`` is set consume the field at ``per_h`` (1/h, scalar or ``[n]``).

        One agent per voxel, so a voxel's uptake is its one agent's rate (``/ 3600`` per
        agent equals the earlier per-voxel ``sum / 3600`` bit for bit).
        """
        xp = self.xp
        k = self.index[cytokine]
        per_s = xp.where(cells, xp.asarray(per_h, dtype=xp.float64) / SECONDS_PER_HOUR, 0.0)
        scatter.add_weights(self.uptake[k], voxels, per_s, 1.0)


def sense(fields_flat: Any, voxels: Any) -> dict[str, Any]:
    """Concentrations [pg/mL] at each agent's voxel, by cytokine name."""
    block = scatter.gather(fields_flat, voxels)  # one gather for all fields
    return {name: block[i] for i, name in enumerate(CATALOG.cytokines)}
