"""What each variable of a run file means: units (UDUNITS), long names and descriptions.

The time series by name (or by the prefix before ``/``), the bounded clinical scores'
``valid_range`` and the core agent columns; :class:`carabm.io.hdf5.RunWriter` writes them as
attributes, and docs/outputs.md lists them. Also importable from ``carabm.io.hdf5``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: time-series metadata by name (or name prefix before "/"): UDUNITS units, long name ("{}" = the part after "/"), description
SERIES: dict[str, tuple[str, str, str]] = {
    "time_h": ("h", "time since CAR-T infusion", "simulated time since CAR-T infusion (t = 0), in hours"),
    "counts": ("1", "{} agents", "agents of this type, lattice plus systemic blood pool (a CAR-T agent may stand for several or a fraction of a cell: see cells/)"),
    "cells": ("1", "{} cells", "cells the agents of this type stand for (their weights), lattice plus systemic blood pool, in lattice-scale units"),
    "serum": ("pg mL-1", "serum {}", "serum (systemic blood pool) concentration"),
    "cns": ("pg mL-1", "CNS {}", "mean concentration over CNS voxels"),
    "bbb_integrity": ("1", "mean BBB integrity", "mean BBB integrity over BBB voxels (1 = intact, 0 = fully open)"),
    "crs_grade": ("1", "CRS grade", "cytokine release syndrome grade 0-4, model surrogate of the ASTCT grade"),
    "icans_grade": ("1", "ICANS grade", "ICANS grade 0-4, model surrogate of the ASTCT grade: the worst of its domains"),
    "icans_domain": ("1", "ICANS {} grade", "grade 0-4 of one ICANS domain (ice, consciousness, seizure, motor, edema), model surrogate"),
    "consciousness_depression": ("1", "depressed consciousness", "depressed level of consciousness 0-1 (1 = unarousable), model surrogate"),
    "seizure_propensity": ("1", "seizure propensity", "seizure propensity 0-1 from CNS IL-1b and TNF-a, model surrogate"),
    "motor_deficit": ("1", "motor deficit", "deepest local BBB breakdown (1 - min integrity), surrogate of a focal lesion with motor weakness"),
    "cerebral_edema": ("1", "cerebral oedema", "share of BBB voxels below clinical.edema_integrity, surrogate of focal or diffuse cerebral oedema"),
    "endothelial_activation": ("1", "endothelial activation", "systemic endothelial activation 0-1 (Weibel-Palade Ang-2 release)"),
    "ang2_ang1": ("1", "Ang-2/Ang-1 ratio", "systemic angiopoietin-2/angiopoietin-1 ratio"),
    "vasodilation": ("1", "vasodilation", "NO-driven vasodilation 0-1 (iNOS induced by IL-1b and TNF-a)"),
    "vasopressor_need": ("1", "vasopressor need", "hypotension surrogate 0-1 (vasodilation or capillary-leak volume loss), model surrogate"),
    "oxygen_need": ("1", "oxygen need", "hypoxia surrogate 0-1 (pulmonary capillary leak), model surrogate"),
    "tumor_burden": ("1", "tumour burden", "B cells alive on the lattice"),
    "blood_per_ul": ("uL-1", "blood {} per uL", "circulating cells of this type per microlitre of blood"),
    "temperature_c": ("degC", "body temperature", "body temperature, model surrogate"),
    "vascular_leak": ("1", "vascular leak", "systemic capillary leak (0 = none)"),
    "ice_score": ("1", "ICE score", "immune effector cell encephalopathy score 0-10 (10 = normal), model surrogate"),
    "activated": ("1", "activated {} cells", "activated cells of this type"),
    "cns_infiltrate": ("1", "CNS infiltrate", "CAR-T cells and monocytes in the CNS"),
    "mean_activation": ("1", "mean activation of {} cells", "mean activation level (0-1) of the cells of this type on the lattice"),
    "monocyte_pool_activation": ("1", "circulating monocyte activation", "mean activation level (0-1) of the circulating monocyte pool (over its sensitivity classes)"),
    "monocyte_pool_secretion": (
        "pg mL-1 h-1",
        "{} secreted by circulating monocytes",
        "production of this cytokine into serum by the circulating (off-lattice) monocyte pool over the last step, per mL of blood",
    ),
    "crp_mg_l": ("mg L-1", "serum CRP", "C-reactive protein in serum (hepatic synthesis driven by IL-6), model surrogate"),
    "ferritin_ng_ml": ("ng mL-1", "serum ferritin", "ferritin in serum (released by activated macrophages), model surrogate"),
    "drug": ("ug mL-1", "plasma {}", "drug concentration in plasma (one-compartment pharmacokinetics)"),
    "drug_cns": (
        "ug mL-1",
        "CNS exposure to {}",
        "CNS exposure of this drug: plasma level times its CSF/plasma ratio, rising to 1 as the BBB opens",
    ),
}
#: ``valid_range`` of the bounded clinical scores
VALID_RANGE = {"crs_grade": (0, 4), "icans_grade": (0, 4), "ice_score": (0.0, 10.0), "bbb_integrity": (0.0, 1.0)}
#: the core agent columns in snapshots: units, long name, description (the cell types' variables: ``variable_docs``)
AGENT_COLUMNS: dict[str, tuple[str, str, str]] = {
    "id": ("1", "agent id", "stable agent id, never reused"),
    "position": ("1", "voxel index (z, y, x)", "voxel indices in (z, y, x) order, like the fields"),
    "xyz_um": ("um", "voxel centre (x, y, z)", "voxel centre in um, (x, y, z) order, for ParaView/VisIt"),
    "type": ("1", "cell type", "cell type code (flag_values / flag_meanings)"),
    "state": ("1", "cell state", "state code of the agent, per cell type (attribute codes)"),
}

# kept for code that imported them (schema 1 names)
UNITS = {key: value[0] for key, value in SERIES.items()}
DESCRIPTIONS = {key: value[2] for key, value in SERIES.items()}


def _key(name: str) -> str:
    return name.split("/")[0]


def series_metadata(name: str) -> dict[str, Any]:
    """``units``, ``long_name``, ``description`` (and ``valid_range``) of the time series ``name`` (e.g. ``serum/IL6``)."""
    units, long_name, description = SERIES.get(_key(name), ("1", "{}", "model readout"))
    part = name.split("/", 1)[1] if "/" in name else name
    meta: dict[str, Any] = {"units": units, "long_name": long_name.format(part), "description": description}
    if name in VALID_RANGE:
        meta["valid_range"] = np.array(VALID_RANGE[name])  # int64 or float64, as the series
    return meta


def agent_metadata(name: str, variable_docs: Mapping[str, tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """``units``, ``long_name``, ``description`` of an agent column: a core column, a documented variable, or a generic text."""
    default = ("h" if name.endswith("_h") else "1", name.replace("_", " "), f"per-agent variable {name!r} of the cell rules")
    units, long_name, description = AGENT_COLUMNS.get(name) or (variable_docs or {}).get(name, default)
    return {"units": units, "long_name": long_name, "description": description}
