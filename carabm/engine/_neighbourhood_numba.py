"""numba CPU twin of :meth:`carabm.engine.neighbourhood.Neighbourhood.random_neighbour` (bit-identical).

The array version makes ~30 passes over a ``[26, m]`` table (flags, counts, a running sum
per direction); for the few thousand agents of a quickstart each pass costs more in NumPy's
call overhead than in work. Here it is one pass over the agents.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from carabm.engine.numba_cache import CACHE


@nb.njit(cache=CACHE, nogil=True, boundscheck=False)
def random_neighbour(table, among_padded, columns, u, slot, has):  # noqa: ANN001
    """For each column ``j = columns[c]`` of ``table`` (``1 + slot`` per direction, 0: none): the ``floor(u_c * count)``-th
    neighbour (in direction order) whose ``among_padded[1 + slot]`` is set, as ``slot[j]`` (-1 if none), and ``has[j]``.

    Columns not listed are left as they are. ``pick = int(float64(u) * count)`` as NumPy computes
    ``float32 * int64``; the direction of an agent without such a neighbour is the last one (as
    ``first_beyond``), and it gets -1.
    """
    rows = table.shape[0]
    for c in range(columns.shape[0]):
        j = columns[c]
        count = 0
        for i in range(rows):
            if among_padded[table[i, j]]:
                count += 1
        pick = np.int64(np.float64(u[c]) * np.float64(count))
        direction = rows - 1
        seen = 0
        for i in range(rows):
            if among_padded[table[i, j]]:
                if seen == pick:
                    direction = i
                    break
                seen += 1
        has[j] = count > 0
        slot[j] = table[direction, j] - 1 if count > 0 else -1


@nb.njit(cache=CACHE, nogil=True, boundscheck=False)
def neighbour_table(occupancy, padded_flat, offsets, out):  # noqa: ANN001
    """``out[d, i] = 1 + occupancy[padded_flat[i] + offsets[d]]`` (int64; 0: no agent), as the array version's take."""
    for d in range(offsets.shape[0]):
        offset = offsets[d]
        for i in range(padded_flat.shape[0]):
            out[d, i] = np.int64(occupancy[padded_flat[i] + offset]) + 1


@nb.njit(cache=CACHE, nogil=True, boundscheck=False)
def neighbour_sum(table, padded, out):  # noqa: ANN001
    """``out[j] = sum_d padded[table[d, j]]`` in float32, direction by direction: what NumPy's
    ``take(padded, table).sum(axis=0, dtype=float32)`` adds (row after row), without the ``[26, m]`` gather."""
    rows, m = table.shape
    for j in range(m):
        out[j] = padded[table[0, j]]
    for i in range(1, rows):
        for j in range(m):
            out[j] += padded[table[i, j]]
