"""Malignant CD19+ B cells: the tumour grows into free space, and lysed cells release DAMPs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from carabm.biology import rules
from carabm.engine.agents import KindSpec
from carabm.io.catalog import CellType
from carabm.io.config import CellSection

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "bcell"


class BCell(CellSection):
    """Malignant CD19+ B cells: grow, die when lysed, release DAMPs."""

    initial_count: int = Field(2000, ge=0, description="tumour B cells on the lattice at t = 0 [cells]; sets the lattice scale")
    speed_um_min: float = Field(0.5, ge=0, description="B-cell speed [um/min]; assumed: slow, tumour-bound")
    doubling_time_h: float = Field(168.0, gt=0, description="tumour doubling time when space is free [h]; assumed (aggressive lymphoma, days)")
    damp_release_pg: float = Field(2e-5, ge=0, description="DAMP released by one lysed cell [pg]; assumed (HMGB1-like surrogate)")


def kind_spec(p: BCell, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: tumour-bound, stays in tissue."""
    return KindSpec(NAME, p.speed_um_min, ("tissue",), circulates=False)


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


#: the catalog entry (registered by carabm.biology, whose order sets the HDF5 type codes)
CELL_TYPE = CellType(
    NAME, "B cells (tumour)", home="tissue", states=("alive",), section=BCell, spec=kind_spec,
    colour=(1.00, 0.85, 0.10),  # yellow: tumour B cells
    layers={"grow": grow}, tumour=True, tallies=("bcell_lysed",),
)  # fmt: skip
