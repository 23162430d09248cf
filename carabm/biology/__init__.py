"""Biology layer: cell-type rules, cytokine network, BBB, therapies, clinical readouts (never imports cupy).

Importing it registers the built-in model in the catalog (:mod:`carabm.io.catalog`): the
cytokines and drugs (their modules register them), the cell types below in this order (their
order is their HDF5 ``type`` code: never reorder, plug-ins come after), and the config
sections the biology owns. How to add to it: docs/extending.md.
"""

from __future__ import annotations

from carabm.biology import (
    acute_phase,
    astrocyte,
    bcell,
    cart,
    clinical,
    cytokines,
    drugs,
    endothelium,
    macrophage,
    microglia,
    monocyte,
    triggers,
)
from carabm.io.catalog import register_cell_type, register_layer, register_section

for _module in (cart, bcell, macrophage, monocyte, microglia):
    register_cell_type(_module.CELL_TYPE)
register_section("endothelium", endothelium.Endothelium)
register_section("clinical", clinical.Clinical)
register_section("acute_phase", acute_phase.AcutePhase)
register_section("astrocyte", astrocyte.Astrocyte)
register_layer(astrocyte.LAYER)

__all__ = ["cytokines", "drugs", "triggers"]
