"""Malignant CD19+ B cells: the tumour grows into free space, and lysed cells release DAMPs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carabm.biology import rules

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "bcell"


def grow(model: CrsModel) -> None:
    """Each B cell divides into a free neighbouring tissue voxel at the tumour's doubling rate."""
    params = model.config.cells.bcell
    p_divide = rules.probability(rules.rate_per_h_from_half_life(params.doubling_time_h), model.dt_h)
    dividing = model.mask_of(NAME) & (model.uniform_all("bcell:divide") < p_divide)
    model.movement.divide(dividing, model.step_index, "bcell:daughter")


def lyse(model: CrsModel, targets: Any) -> None:
    """Kill the B cells where ``targets`` (bool ``[n]``) is set; each releases its DAMP load into its voxel."""
    model.secretion.release("DAMP", model.voxels(), targets, model.config.cells.bcell.damp_release_pg, model.dt_s)
    model.mark_dead(targets)
    model.tally("bcell_lysed", targets)
