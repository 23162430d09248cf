"""Macrophages (tissue-resident and monocyte-derived): the shared myeloid rules
(:mod:`carabm.biology.myeloid`) and turnover in tissue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import Field

from carabm.biology import myeloid, rules
from carabm.biology.myeloid import Myeloid
from carabm.engine.agents import KindSpec
from carabm.io.catalog import CellType

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "macrophage"


class Macrophage(Myeloid):
    """Tissue-resident and monocyte-derived macrophages."""

    initial_count: int = Field(400, ge=0, description="tissue macrophages at t = 0 [cells]; used only when per_tumour_cell is null")
    per_tumour_cell: float | None = Field(
        0.2, ge=0, le=100,
        description="tissue macrophages at t = 0 per tumour B cell on the lattice [cells/cell] (null: initial_count); assumed: 1 in 6 cells of "
                    "the tumour site, near the median 12.8 % CD68+ cells (range 2.4-51 %) of DLBCL tumour nodules (Blood 2014;124(21):5390)",
    )  # fmt: skip
    speed_um_min: float = Field(1.0, ge=0, description="macrophage speed [um/min]; assumed")
    death_per_day: float = Field(0.05, ge=0, description="turnover of tissue macrophages [1/day]; assumed (weeks-long lifespan)")


def kind_spec(p: Macrophage, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: tissue and CNS, never in blood."""
    return KindSpec(NAME, p.speed_um_min, ("tissue", "cns"), circulates=False, variables=myeloid.VARIABLES)


def step(model: CrsModel) -> None:
    """Activation and turnover of tissue macrophages."""
    p = model.config.cells.macrophage
    cells = model.mask_of(NAME)
    myeloid.activate(model, cells, p)
    p_death = rules.probability(p.death_per_day / 24.0, model.dt_h)
    model.mark_dead(cells & (model.uniform_all("macrophage:death") < p_death))


def secrete(model: CrsModel) -> None:
    """Secretion and IL-6 uptake of macrophages."""
    myeloid.secrete(model, model.mask_of(NAME), model.config.cells.macrophage)


#: the catalog entry (registered by carabm.biology, whose order sets the HDF5 type codes)
CELL_TYPE = CellType(
    NAME, "macrophages", home="tissue", states=myeloid.STATES, activated="activated", section=Macrophage, spec=kind_spec,
    colour=(1.00, 0.20, 0.80),  # magenta
    variables=myeloid.VARIABLES, variable_docs=myeloid.VARIABLE_DOCS, layers={"decide": step, "secrete": secrete},
)  # fmt: skip
