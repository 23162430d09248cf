"""numba CPU twins of :func:`carabm.engine.scatter.mean_at` and :func:`~carabm.engine.scatter.add_weights`
(bit-identical to the NumPy expressions they replace)."""

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


@nb.njit(cache=CACHE, nogil=True, boundscheck=False)
def add_weights(row, voxels, weights, scale):  # noqa: ANN001
    """``row += (bincount(voxels, weights, minlength=row.size) * scale).astype(float32)`` in two passes.

    The same arithmetic in the same order: float64 sums over agents in index order, one float64
    product, one rounding to float32, one float32 add per voxel (every voxel, as NumPy adds 0 to
    the untouched ones), without the three voxel-sized temporaries.
    """
    acc = np.zeros(row.shape[0], dtype=np.float64)
    for i in range(voxels.shape[0]):
        acc[voxels[i]] += np.float64(weights[i])
    for v in range(row.shape[0]):
        row[v] = row[v] + np.float32(acc[v] * scale)
