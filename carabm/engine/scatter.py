"""Per-agent amounts summed into lattice arrays (secretion sources, uptake) and field values read at agents.

Two operations with a NumPy and a CUDA path each: :func:`add_counts` (the same amount per
selected agent) and :func:`add_weights` (a per-agent amount), both ``row[voxel] += ...``
summed over agents, and :func:`gather` (every field at every agent's voxel). On NumPy the
sums are ``bincount`` in float64 (for :func:`add_weights` a compiled pass making the same
sums), rounded once to float32; on a GPU they are float32 atomic adds (sums agree to
float32 rounding, not to the bit: the order of atomic adds varies).
Neither path reads device data on the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carabm.engine import kernels
from carabm.engine.backend import launcher_for, on_device
from carabm.engine.jit_cache import compiled_twin

_BLOCK = 256


def _blocks(n: int) -> tuple[int]:
    return ((n + _BLOCK - 1) // _BLOCK,)


def add_counts(row: Any, voxels: Any, mask: Any, amount: float, launcher: kernels.Launcher | None = None) -> None:
    """``row[v] += amount * (number of agents at v with mask set)``.

    ``row``: float32 ``[n_voxels]`` (C-contiguous); ``voxels``: int64 flat voxel per agent;
    ``mask``: bool per agent (``None``: all). Matches the earlier ``bincount(voxels[mask]) *
    amount`` to the bit on NumPy.
    """
    n = int(voxels.shape[0])
    if n == 0 or amount == 0.0:
        return
    launch = launcher_for(row, launcher)
    if launch is None:
        counts = np.bincount(voxels, minlength=row.size) if mask is None else np.bincount(voxels, weights=mask, minlength=row.size)
        row += (counts * float(amount)).astype(np.float32)
        return
    xp = kernels.array_module(row)
    selected = xp.ones(n, dtype=xp.uint8) if mask is None else xp.ascontiguousarray(mask, dtype=xp.uint8)
    launch(
        "scatter", "scatter_counts", _blocks(n), (_BLOCK,), (row, xp.ascontiguousarray(voxels, dtype=xp.int64), selected, float(amount), n)
    )


def add_weights(row: Any, voxels: Any, weights: Any, scale: float, launcher: kernels.Launcher | None = None) -> None:
    """``row[v] += scale * sum(weights of the agents at v)``; ``weights`` float ``[n]`` (0 for agents that add nothing).

    ``row`` float32 (the fields' sources) or float64. A float64 row is summed in float64 on both
    paths (on a GPU by double atomic adds): for sums of many small terms, such as agent weights
    of 0.03 summed into hundreds, which float32 adds would round away.
    """
    n = int(voxels.shape[0])
    if n == 0 or scale == 0.0:
        return
    launch = launcher_for(row, launcher)
    if launch is None:
        kernel = compiled_twin("_scatter_numba", "add_weights") if row.dtype == np.float32 and row.ndim == 1 else None
        if kernel is None or not row.flags.c_contiguous:
            row += (np.bincount(voxels, weights=weights, minlength=row.size) * scale).astype(row.dtype)
        else:  # one compiled pass, the same sums and roundings (tests/engine/test_agent_kernels.py)
            kernel(row, np.ascontiguousarray(voxels, dtype=np.int64), np.ascontiguousarray(weights), float(scale))
        return
    xp = kernels.array_module(row)
    if row.dtype not in (np.float32, np.float64):
        raise TypeError(f"add_weights: row must be float32 or float64, not {row.dtype}")
    launch(
        "scatter", "scatter_weights" if row.dtype == np.float32 else "scatter_weights_f64", _blocks(n), (_BLOCK,),
        (row, xp.ascontiguousarray(voxels, dtype=xp.int64), xp.ascontiguousarray(weights, dtype=xp.float64), float(scale), n),
    )  # fmt: skip


def mean_at(fields_flat: Any, voxels: Any) -> Any:
    """Mean of every field over ``voxels`` (e.g. the CNS): ``fields_flat[:, voxels].mean(axis=1)``, float32 ``[K]``.

    NumPy's gather ``[:, voxels]`` is column-major and its mean sums each field in voxel order;
    on the CPU one compiled pass makes the same sums without the gather (same numbers, checked in
    tests/engine/test_agent_kernels.py). One field (a contiguous row, summed pairwise), float64
    and GPU data take the expression itself.
    """
    k, n = int(fields_flat.shape[0]), int(voxels.shape[0])
    if on_device(fields_flat) or k < 2 or n == 0 or fields_flat.dtype != np.float32:
        return fields_flat[:, voxels].mean(axis=1)
    kernel = compiled_twin("_scatter_numba", "mean_at")
    if kernel is None:  # pragma: no cover
        return fields_flat[:, voxels].mean(axis=1)
    out = np.empty(k, dtype=np.float32)
    kernel(np.ascontiguousarray(fields_flat), np.ascontiguousarray(voxels, dtype=np.int64), out)
    return out


def gather(fields_flat: Any, voxels: Any, launcher: kernels.Launcher | None = None) -> Any:
    """Every field at every agent's voxel: ``fields_flat[:, voxels]`` as float32 ``[K, n]``."""
    launch = launcher_for(fields_flat, launcher)
    if launch is None:
        return np.take(fields_flat, voxels, axis=1)  # fields_flat[:, voxels], without fancy indexing's slower path
    xp = kernels.array_module(fields_flat)
    k, n_voxels = (int(s) for s in fields_flat.shape)
    n = int(voxels.shape[0])
    out = xp.empty((k, n), dtype=xp.float32)
    if n == 0:
        return out
    launch(
        "scatter", "gather_fields", _blocks(n), (_BLOCK,),
        (xp.ascontiguousarray(fields_flat, dtype=xp.float32), xp.ascontiguousarray(voxels, dtype=xp.int64), out, k, n_voxels, n),
    )  # fmt: skip
    return out
