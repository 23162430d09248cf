"""Initial placement of cells: distinct random free voxels of a compartment.

The choice is a pure function of (seed, purpose, voxel index), so it does not depend on
anything else placed before in a different order, and is identical on NumPy and CuPy.
"""

from __future__ import annotations

from typing import Any

from carabm.engine import rng


def choose_voxels(xp: Any, candidates: Any, count: int, seed: int, purpose: str) -> Any:
    """Pick ``count`` distinct flat voxel indices out of ``candidates`` (int64 array) at random.

    Raises ``ValueError`` when there are fewer candidates than ``count``.
    """
    candidates = xp.asarray(candidates, dtype=xp.int64)
    if count > int(candidates.size):
        raise ValueError(f"cannot place {count} cells in {int(candidates.size)} free voxels")
    if count == 0:
        return candidates[:0]
    keys = rng.priorities(xp, seed, 0, candidates, purpose)
    order = xp.argsort(keys)
    return xp.sort(candidates[order[:count]])
