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
    cells = model.slots_of(NAME)
    if cells.size == 0:
        return
    p_divide = rules.probability(rules.rate_per_h_from_half_life(params.doubling_time_h), model.dt_h)
    dividing = cells[model.uniform(cells, "bcell:divide") < p_divide]
    model.movement.divide(dividing, model.step_index, "bcell:daughter")


def lyse(model: CrsModel, targets: Any) -> int:
    """Kill the B cells in slots ``targets``; each releases its DAMP load into its voxel."""
    if targets.size == 0:
        return 0
    voxels = model.voxel_of(targets)
    model.secretion.release("DAMP", voxels, model.config.cells.bcell.damp_release_pg, model.dt_s)
    model.mark_dead(targets)
    model.counters["bcell_lysed"] += int(targets.size)
    return int(targets.size)
