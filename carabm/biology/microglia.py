"""Microglia: CNS-resident macrophages. They follow the shared myeloid rules
(:mod:`carabm.biology.myeloid`) and, activated by cytokines and cells entering through a
leaky BBB, run the local CNS loop with the astrocytes (:mod:`carabm.biology.astrocyte`):
more sensitive to priming than tissue macrophages, and slow to return to rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import Field

from carabm.biology import myeloid
from carabm.biology.myeloid import Myeloid
from carabm.engine.agents import KindSpec
from carabm.io.catalog import CellType
from carabm.io.config import CytokineMap, cytokine_map

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "microglia"


class Microglia(Myeloid):
    """CNS-resident macrophages: the local CNS feedback loop."""

    initial_count: int = Field(150, ge=0, description="microglia in the CNS region at t = 0 [cells]")
    secretion_pg_cell_h: CytokineMap = Field(
        cytokine_map(IL6=1e-4, IL1b=5e-5, MCP1=2e-4, TNFa=5e-5, IL10=5e-5),
        description="secretion at full activation [pg/cell/h]; assumed 5x below macrophages (microglia are weaker producers)",
    )
    speed_um_min: float = Field(0.2, ge=0, description="soma motility [um/min]; assumed (nearly sessile)")
    trigger_half_max_pg_ml: CytokineMap = Field(
        cytokine_map(IFNg=100.0, GMCSF=100.0, DAMP=100.0),
        description="half-maximal concentration of each priming signal [pg/mL]; assumed: 10x below tissue macrophages (microglia "
                    "are primed sentinels of a normally cytokine-free parenchyma)",
    )  # fmt: skip
    deactivation_per_h: float = Field(
        0.02, ge=0, description="rate of return to rest [1/h]; assumed: slow resolution, microglial activation after a systemic "
                                "inflammatory insult persists for days (about 35 h half-life)",
    )  # fmt: skip


def kind_spec(p: Microglia, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: stays in the CNS."""
    return KindSpec(NAME, p.speed_um_min, ("cns",), circulates=False, variables=myeloid.VARIABLES)


def step(model: CrsModel) -> None:
    """Activation of microglia."""
    myeloid.activate(model, model.mask_of(NAME), model.config.cells.microglia)


def secrete(model: CrsModel) -> None:
    """Secretion and IL-6 uptake of microglia."""
    myeloid.secrete(model, model.mask_of(NAME), model.config.cells.microglia)


#: the catalog entry (registered by carabm.biology, whose order sets the HDF5 type codes)
CELL_TYPE = CellType(
    NAME, "microglia", home="cns", states=myeloid.STATES, activated="activated", section=Microglia, spec=kind_spec,
    colour=(0.20, 0.90, 1.00),  # cyan: CNS-resident macrophages
    variables=myeloid.VARIABLES, variable_docs=myeloid.VARIABLE_DOCS, layers={"decide": step, "secrete": secrete},
)  # fmt: skip
