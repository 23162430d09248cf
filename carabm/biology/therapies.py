"""Therapy effects on the model's mechanisms, as multipliers the cell rules read each step.

Without drugs every multiplier is 1 (no effect). Drug PK/PD and scheduling fill these in.
"""

from __future__ import annotations

from typing import Any

from carabm.engine.lattice import CNS
from carabm.io.config import CYTOKINES


class Effects:
    """Current therapy effects; 1 means no effect, 0 a complete block."""

    def __init__(self) -> None:
        self.cart_signalling = 1.0  # dasatinib: CAR signalling free fraction
        self.tcell_proliferation = 1.0  # steroids
        self.cytokine_production = 1.0  # steroids
        self.myeloid_activation = 1.0  # steroids
        self.monocyte_supply = 1.0  # depletion
        self.fever_masked = False  # antipyretic effect of IL-6/IL-1 blockade (ASTCT: fever not required)
        # free (unbound, unblocked) fraction of each cytokine's signalling, periphery and CNS
        self.free = {"periphery": dict.fromkeys(CYTOKINES, 1.0), "cns": dict.fromkeys(CYTOKINES, 1.0)}
        self.il6r_free = {"periphery": 1.0, "cns": 1.0}

    def signal_free_fraction(self, compartment: Any) -> dict[str, Any]:
        """Per cytokine, the signalling fraction at cells in ``compartment`` (labels array)."""
        in_cns = compartment == CNS
        out: dict[str, Any] = {}
        for name in CYTOKINES:
            a, b = self.free["periphery"][name], self.free["cns"][name]
            out[name] = a if a == b else (in_cns * b + (~in_cns) * a)
        return out

    def signal_free_fraction_scalar(self, region: str) -> dict[str, float]:
        """Per cytokine, the signalling fraction in the blood/periphery (``region`` != 'cns') or CNS."""
        return dict(self.free["cns" if region == "cns" else "periphery"])

    def il6_receptor_free(self, compartment: Any) -> Any:
        """Fraction of IL-6 receptors free of tocilizumab at cells in ``compartment``."""
        a, b = self.il6r_free["periphery"], self.il6r_free["cns"]
        if a == b:
            return a
        in_cns = compartment == CNS
        return in_cns * b + (~in_cns) * a
