"""Agent kinds: what the engine needs to know about each kind biology registers (:class:`KindSpec`).

The store itself is :class:`carabm.engine.agents.AgentStore`, which also re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carabm.engine.lattice import BBB, BLOOD, COMPARTMENTS

#: columns every store has; declared variables may not reuse these names
CORE_COLUMNS = ("position", "kind", "state", "id")
#: the declared variable (float32) of a super-individual kind: the cells one agent stands for
#: (Scheffer et al., Ecol Model 1995); kinds without it stand for one cell per agent
WEIGHT = "weight"


def _compartment_code(value: str | int) -> int:
    if isinstance(value, str):
        if value not in COMPARTMENTS:
            raise ValueError(f"unknown compartment {value!r}; allowed {list(COMPARTMENTS)}")
        return COMPARTMENTS[value]
    if int(value) not in COMPARTMENTS.values():
        raise ValueError(f"unknown compartment code {value}; allowed {sorted(COMPARTMENTS.values())}")
    return int(value)


@dataclass(frozen=True)
class KindSpec:
    """What the engine needs to know about one agent kind (biology registers these).

    ``speed_um_min``: random-walk speed (µm/min), 0 for sessile kinds.
    ``allowed_compartments``: names or codes (``tissue blood bbb cns``) the kind may occupy;
    BBB voxels are also open to kinds with ``bbb_crossing`` (gated by integrity).
    ``chemotaxis_field``: index into the ``fields`` array handed to movement, or ``None``.
    ``chemotaxis_sensitivity``: bias per unit of field difference between neighbours.
    ``extravasation_per_h`` / ``intravasation_per_h``: rate (1/h) at which a cell at the
    vessel wall crosses it BLOOD -> TISSUE / TISSUE -> BLOOD.
    ``circulates``: cells of the kind in lattice blood exchange with the systemic pool.
    ``variables``: extra per-agent columns ``name -> dtype`` (timers float32, counters int32).
    """

    name: str
    speed_um_min: float = 0.0
    allowed_compartments: tuple[str | int, ...] = ("tissue",)
    chemotaxis_field: int | None = None
    chemotaxis_sensitivity: float = 0.0
    extravasation_per_h: float = 0.0
    intravasation_per_h: float = 0.0
    bbb_crossing: bool = False
    circulates: bool = True
    variables: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        codes = tuple(sorted({_compartment_code(c) for c in self.allowed_compartments}))
        if not codes:
            raise ValueError(f"kind {self.name!r}: allowed_compartments is empty")
        object.__setattr__(self, "allowed_compartments", codes)
        for name in ("speed_um_min", "extravasation_per_h", "intravasation_per_h"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"kind {self.name!r}: {name} must be >= 0, got {getattr(self, name)}")
        object.__setattr__(self, "variables", {str(k): np.dtype(v) for k, v in dict(self.variables).items()})
        clash = set(self.variables) & set(CORE_COLUMNS)
        if clash:
            raise ValueError(f"kind {self.name!r}: variable names {sorted(clash)} are reserved")

    def allows(self, compartment: int) -> bool:
        """True when the kind may occupy voxels of ``compartment`` (BBB also via ``bbb_crossing``)."""
        return compartment in self.allowed_compartments or (compartment == BBB and self.bbb_crossing)

    @property
    def weighted(self) -> bool:
        """True when each agent of the kind carries a :data:`WEIGHT` (a super-individual)."""
        return WEIGHT in self.variables

    @property
    def in_blood(self) -> bool:
        """True when the kind may live in blood (and so circulate when ``circulates``)."""
        return BLOOD in self.allowed_compartments
