"""Endothelial activation: BBB integrity per BBB voxel, and systemic capillary leak.

IL-6 (trans-signalling), IL-1β, TNF-α and IFN-γ lower integrity ``I`` of each BBB voxel,
``dI/dt = -k_damage D (1 - 0) I + k_recover (1 - I)``, with ``D`` the OR of Hill responses
to the larger of the serum level (blood side) and the level in the BBB voxel. Integrity
sets the field solver's face conductance (``p + (1 - p)(1 - I)`` per cytokine, ``p`` the
intact permeability) and the cells' crossing probability (engine). The systemic leak
``L`` (0..1) follows the same law from serum levels and drives hypotension and hypoxia.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field
from scipy import ndimage

from carabm.biology import rules
from carabm.engine.lattice import BBB, BLOOD, TISSUE, Lattice
from carabm.io.config import CytokineMap, Strict, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel


class Endothelium(Strict):
    """Endothelial activation and BBB integrity."""

    damage_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL6=1000.0, IL1b=300.0, TNFa=300.0, IFNg=300.0),
        description="concentration at the BBB for half-maximal damage, per cytokine [pg/mL]; assumed",
    )
    damage_hill: float = Field(2.0, gt=0, description="Hill power of the damaging signals [1]; assumed")
    damage_per_h: float = Field(0.08, ge=0, description="integrity loss rate at full activation [1/h]; assumed (foot-process loss over a day)")
    recovery_per_h: float = Field(0.01, ge=0, description="recovery rate towards 1 [1/h]; assumed (days)")
    crossing_hill: float = Field(2.0, gt=0, description="BBB opening (1 - integrity)^h scales cell crossing per try and cytokine conductance; assumed")
    leak_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IL6=300.0, IL1b=60.0, TNFa=60.0, IFNg=150.0),
        description="serum level for half-maximal systemic capillary leak, per cytokine [pg/mL]; assumed",
    )
    leak_per_h: float = Field(0.15, ge=0, description="systemic leak rise rate at full activation [1/h]; assumed")
    leak_recovery_per_h: float = Field(0.08, ge=0, description="systemic leak recovery rate [1/h]; assumed")


def brain_separator(lattice: Lattice, reach: int = 4) -> np.ndarray:
    """Tissue voxels touching the brain's vessel: given zero conductance for cytokines.

    In the body the tumour site and the brain are far apart; on the lattice they share the
    brain vessel. Without this seam, cytokines made in the tumour would diffuse through the
    thin vessel straight to the BBB within one implicit step (blood is well mixed with the
    systemic pool only between steps). Blood within ``reach`` voxels of the BBB counts as
    the brain vessel. Cells still cross; only diffusion is cut.
    """
    near_bbb = ndimage.binary_dilation(lattice.labels == BBB, iterations=reach)
    brain_blood = near_bbb & (lattice.labels == BLOOD)
    return ndimage.binary_dilation(brain_blood) & (lattice.labels == TISSUE)


class Conductance:
    """The field solver's face conductance per cytokine: 1 off the BBB, 0 across the brain separator, and on
    the BBB ``p + (1 - p)(1 - integrity)^h`` (``p`` the intact permeability per cytokine).

    ``h`` is the same power that gates cells crossing (``endothelium.crossing_hill``): tight
    junctions open little while integrity is high and much once it has fallen.
    """

    def __init__(self, xp: Any, lattice: Lattice, permeability: list[float], crossing_hill: float, bbb_voxels: Any):
        self.xp = xp
        self.k = len(permeability)
        self.permeability = xp.asarray(permeability, dtype=xp.float32)[:, None]
        self.crossing_hill = crossing_hill
        self.bbb_voxels = bbb_voxels
        self.values = xp.ones((self.k,) + lattice.shape, dtype=xp.float32)
        self.values[:, xp.asarray(brain_separator(lattice))] = 0.0

    def refresh(self, solver: Any, integrity: Any, check: bool = True) -> None:
        """Recompute the BBB faces from ``integrity`` and hand the conductance to ``solver``.

        ``check=False`` (every step) skips the solver's range check, a host read on a GPU: the
        values lie in 0..1 by construction (``1 - integrity`` is clipped to 0..1, ``p`` in 0..1).
        """
        xp = self.xp
        flat = self.values.reshape(self.k, -1)
        breach = xp.clip(1.0 - integrity.reshape(-1)[self.bbb_voxels], 0.0, 1.0) ** self.crossing_hill
        p = self.permeability
        flat[:, self.bbb_voxels] = p + (1.0 - p) * breach[None, :]
        solver.set_conductance(self.values, check=check)


def damage_signal(levels: dict[str, Any], half_max: dict[str, float], power: float) -> Any:
    """OR of Hill responses to the damaging cytokines."""
    return rules.any_of(*[rules.hill(levels[name], h, power) for name, h in half_max.items()])


def update(model: CrsModel, serum_pg_ml: Any = None) -> None:
    """Advance BBB integrity and systemic leak by one step; refresh the solver's conductance.

    ``serum_pg_ml``: the serum per cytokine (host), when the caller has it; else read once.
    """
    p = model.config.endothelium
    xp = model.xp
    free = model.effects.signal_free_fraction_scalar("blood")
    levels = model.serum if serum_pg_ml is None else serum_pg_ml
    serum = {name: float(levels[i]) * free[name] for name, i in model.index.items()}
    bbb = model.bbb_voxels
    if model.n_bbb:
        local = {name: xp.maximum(model.fields_flat[model.index[name], bbb] * free[name], serum[name]) for name in p.damage_half_max_pg_ml.as_dict()}
        signal = damage_signal(local, p.damage_half_max_pg_ml.as_dict(), p.damage_hill)
        integrity = model.integrity.reshape(-1)
        integrity[bbb] = rules.relax(integrity[bbb], p.recovery_per_h, p.damage_per_h * signal, model.dt_h).astype(xp.float32)
        model.integrity_changed()
        model.conductance.refresh(model.solver, model.integrity, check=False)
    leak_signal = float(damage_signal(serum, p.leak_half_max_pg_ml.as_dict(), p.damage_hill))
    model.leak = float(rules.relax(model.leak, p.leak_per_h * leak_signal, p.leak_recovery_per_h, model.dt_h))
