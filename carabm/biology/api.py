"""The public API for plug-ins: what a module named in a config's ``plugins:`` uses to add to the model.

A plug-in declares :class:`CellType`, :class:`Cytokine`, :class:`Drug` or :class:`Layer` entries
and registers them; its rule functions take the model (:class:`carabm.biology.model.CrsModel`)
and use its helpers (``mask_of``, ``uniform_all``, ``random_neighbour_of_kind``, ``mark_dead``,
``tally``, ``secretion``, ``circulation``) and the named rule helpers of :mod:`rules`.
Tutorial: docs/extending.md; example: examples/plugins/carnk.py.
"""

from __future__ import annotations

from carabm.biology import bcell, rules
from carabm.biology.cart import targeted
from carabm.engine.agents import KindSpec
from carabm.io.catalog import (
    PHASES,
    CellType,
    Cytokine,
    Drug,
    Layer,
    register_cell_type,
    register_check,
    register_cytokine,
    register_drug,
    register_layer,
)
from carabm.io.config import CellSection, CytokineMap, cytokine_map

__all__ = [
    "PHASES", "CellSection", "CellType", "Cytokine", "CytokineMap", "Drug", "KindSpec", "Layer", "bcell",
    "cytokine_map", "register_cell_type", "register_check", "register_cytokine", "register_drug", "register_layer",
    "rules", "targeted",
]  # fmt: skip
