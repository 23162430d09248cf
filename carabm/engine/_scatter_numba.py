"""numba CPU twin of :func:`carabm.engine.scatter.mean_at` (bit-identical to the NumPy expression it replaces)."""

from __future__ import annotations

import numba as nb
import numpy as np

from carabm.engine.numba_cache import CACHE


@nb.njit(cache=CACHE, nogil=True, boundscheck=False)
def mean_at(fields_flat, voxels, out):  # noqa: ANN001
    """``out[k]`` = mean of ``fields_flat[k, voxels]`` (float32), summed in voxel order as NumPy reduces the
    column-major gather ``fields_flat[:, voxels]`` (``K >= 2``), then divided by the count in float32."""
    n = voxels.shape[0]
    for k in range(fields_flat.shape[0]):
        total = fields_flat[k, voxels[0]]
        for j in range(1, n):
            total += fields_flat[k, voxels[j]]
        out[k] = total / np.float32(n)
