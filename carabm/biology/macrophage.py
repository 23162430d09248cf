"""Macrophages (tissue-resident and monocyte-derived) and microglia (CNS-resident macrophages).

Both follow the shared myeloid rules (:mod:`carabm.biology.myeloid`); microglia live in the
CNS and, activated by cytokines and cells entering through a leaky BBB, run the local loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carabm.biology import myeloid, rules

if TYPE_CHECKING:
    from carabm.biology.model import CrsModel

NAME = "macrophage"
MICROGLIA = "microglia"


def step(model: CrsModel, sensed: myeloid.Inputs) -> None:
    """Activation of macrophages and microglia; turnover of tissue macrophages."""
    for name in (NAME, MICROGLIA):
        myeloid.activate(model, model.mask_of(name), getattr(model.config.cells, name), sensed)
    p_death = rules.probability(model.config.cells.macrophage.death_per_day / 24.0, model.dt_h)
    model.mark_dead(model.mask_of(NAME) & (model.uniform_all("macrophage:death") < p_death))


def secrete(model: CrsModel) -> None:
    """Secretion and IL-6 uptake of macrophages and microglia."""
    for name in (NAME, MICROGLIA):
        myeloid.secrete(model, model.mask_of(name), getattr(model.config.cells, name))
