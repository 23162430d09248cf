"""Dotted config keys (``cells.cart.dose``) in nested mappings: read, set, list.

One place for the helpers used by ``--set`` (:mod:`carabm.io.config`) and by sweep files
(overrides, axes and ``derived:`` in :mod:`carabm.hpc`).
"""

from __future__ import annotations

from typing import Any

from carabm.errors import ConfigError


def parent_of(data: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """The mapping that holds dotted key ``parts`` in ``data``, creating missing levels."""
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, cannot set {'.'.join(parts)}")
        node = child
    return node


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in a nested mapping; mapping values merge into existing mappings."""
    parts = key.split(".")
    node = parent_of(data, parts)
    old = node.get(parts[-1])
    if isinstance(value, dict) and isinstance(old, dict):
        merged = dict(old)
        for k, v in value.items():
            set_path(merged, str(k), v)
        node[parts[-1]] = merged
    else:
        node[parts[-1]] = value


def get_path(data: Any, key: str) -> Any:
    """The value at a dotted key, or None where any level is missing."""
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf of a nested mapping as (dotted key, value), in mapping order."""
    out = []
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out += flatten(value, full)
        else:
            out.append((full, value))
    return out
