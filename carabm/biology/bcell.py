"""Malignant B cells: the tumour grows into free space, lysed cells release DAMPs, and each
cell carries its own CD19 antigen density, which decides whether a CAR-T cell recognises it.

Antigen escape: a share of the tumour is CD19-negative at infusion and the rest varies in
density from cell to cell (``patient.cd19_negative_fraction``, ``patient.cd19_sites_per_cell``);
daughters inherit their parent's density, so cells below the CAR's recognition threshold
(Majzner, Cancer Discov 2020) survive and regrow. The CAR-T module asks :func:`recognised`
which antigen contacts count, and :func:`cart_division_limit` how many divisions the
patient's product can make (its fitness relative to the tumour; Locke, Blood Adv 2020), extended
by the targets each cell killed.
"""

from __future__ import annotations

import math
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
#: per-agent variable: CD19 antigen density [molecules/cell], inherited by daughters
CD19 = "cd19_sites"
VARIABLES = {CD19: "float32"}
VARIABLE_DOCS = {CD19: ("1", "CD19 antigen density", "B cell: CD19 molecules on the cell surface, per cell (0: CD19-negative); daughters inherit it")}


class BCell(CellSection):
    """Malignant CD19+ B cells: grow, die when lysed, release DAMPs."""

    initial_count: int = Field(2000, ge=0, description="tumour B cells on the lattice at t = 0 [cells]; sets the lattice scale")
    speed_um_min: float = Field(0.5, ge=0, description="B-cell speed [um/min]; assumed: slow, tumour-bound")
    doubling_time_h: float = Field(168.0, gt=0, description="tumour doubling time when space is free [h]; assumed (aggressive lymphoma, days)")
    damp_release_pg: float = Field(2e-5, ge=0, description="DAMP released by one lysed cell [pg]; assumed (HMGB1-like surrogate)")
    cd19_recognition_sites: float = Field(
        2000.0, gt=0, description="CD19 density at which half of a CAR-T cell's contacts signal [molecules/cell]; Majzner et al., "
        "Cancer Discov 2020 (and Blood 2018;132 suppl. 963): CD19-CD28z CAR activity nearly ablated below about 2,000 molecules/cell",
    )
    cd19_recognition_hill: float = Field(
        2.0, gt=0, description="Hill power of recognition in antigen density [1]; assumed: a steep threshold (Majzner 2020: activity "
        "falls from full to nearly none within a few-fold of the threshold)",
    )
    cd19_spread: float = Field(
        0.5, ge=0, description="cell-to-cell spread of CD19 density within a tumour, SD of its natural log [1]; assumed: a unimodal "
        "flow-cytometry peak about half a decade wide (no per-cell source checked; between patients the spread is wider, see the cohort)",
    )


def kind_spec(p: BCell, field_index: Mapping[str, int]) -> KindSpec:
    """Engine kind: tumour-bound, stays in tissue."""
    return KindSpec(NAME, p.speed_um_min, ("tissue",), circulates=False, variables=VARIABLES)


def seed_antigen(model: CrsModel) -> None:
    """Set-up: each tumour cell's CD19 density at infusion (lognormal around the patient's median; a share negative).

    The draws are keyed by agent id (``uniform_all``), so they do not depend on the order of the agents.
    """
    xp, store = model.xp, model.store
    patient, p = model.config.patient, model.config.cells.bcell
    cells = model.mask_of(NAME)
    u1 = xp.maximum(model.uniform_all("bcell:cd19_density"), 1e-7)  # Box-Muller: one standard normal per agent
    u2 = model.uniform_all("bcell:cd19_angle")
    normal = xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * math.pi * u2)
    density = patient.cd19_sites_per_cell * xp.exp(p.cd19_spread * normal)
    negative = model.uniform_all("bcell:cd19_negative") < patient.cd19_negative_fraction
    density = xp.where(negative, 0.0, density)
    store[CD19][...] = xp.where(cells, density, 0.0).astype(xp.float32)


def recognised(model: CrsModel, target_slot: Any, contact: Any) -> Any:
    """Bool ``[n]``: the agents whose ``contact`` (bool ``[n]``) with the B cell at ``target_slot`` signals through the CAR this step.

    The chance rises with the target's CD19 density as a Hill function (half at
    ``cd19_recognition_sites``); a CD19-negative target never signals, so it is never killed.
    """
    p = model.config.cells.bcell
    density = model.store[CD19][model.xp.maximum(target_slot, 0)]
    chance = rules.hill(density, p.cd19_recognition_sites, p.cd19_recognition_hill)
    return contact & (model.uniform_all("cart:antigen") < chance)


def cart_division_limit(model: CrsModel, kills: Any = None) -> Any:
    """Divisions a CAR-T lineage can make before it exhausts: ``cells.cart.max_divisions`` shifted by the product's fitness.

    ``patient.cart_expansion_capacity`` is the fold expansion of the patient's product relative
    to the typical one, so it adds ``log2(capacity)`` divisions (0.5: one division fewer).
    With ``kills`` (per-cell kill counts, an array) each cell's limit also grows by
    ``cells.cart.divisions_per_kill`` per target it killed: the antigen met extends the programme.
    """
    cart = model.config.cells.cart
    limit = cart.max_divisions + math.log2(model.config.patient.cart_expansion_capacity)
    if kills is None or cart.divisions_per_kill == 0:
        return limit
    return limit + cart.divisions_per_kill * kills


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
    variables=VARIABLES, variable_docs=VARIABLE_DOCS, layers={"grow": grow}, setup=seed_antigen, tumour=True, tallies=("bcell_lysed",),
)  # fmt: skip
