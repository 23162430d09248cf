"""Independent references for the field solver, for tests and benchmarks only (slow, float64).

:func:`reference_lod_step` assembles the same backward-Euler LOD system as
:class:`carabm.engine.fields.FieldSolver` as explicit sparse matrices (face by face) and
solves it with SciPy's direct solver; :func:`explicit_euler_step` is the classic explicit
scheme used as a speed baseline at its own stable step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def _face_factor(g_a: np.ndarray, g_b: np.ndarray) -> np.ndarray:
    total = g_a + g_b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * g_a * g_b / total, 0.0)


def axis_matrix(shape: tuple[int, int, int], axis: int, coefficient: float, g: np.ndarray | None) -> sp.csc_matrix:
    """``I - coefficient * L_axis`` on the flattened (C-order) grid, no-flux ends, face by face."""
    n_vox = int(np.prod(shape))
    index = np.arange(n_vox).reshape(shape)
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    a = index[tuple(lo)].ravel()
    b = index[tuple(hi)].ravel()
    if g is None:
        weight = np.full(a.size, coefficient)
    else:
        weight = coefficient * _face_factor(g.ravel()[a], g.ravel()[b])
    rows = np.concatenate([a, b, a, b])
    cols = np.concatenate([b, a, a, b])
    vals = np.concatenate([-weight, -weight, weight, weight])
    return (sp.identity(n_vox, format="csc") + sp.csc_matrix((vals, (rows, cols)), shape=(n_vox, n_vox))).tocsc()


def reference_lod_step(
    fields: np.ndarray,
    dt_s: float,
    voxel_um: float,
    diffusion_um2_s: Any,
    decay_per_s: Any,
    conductance: np.ndarray | None = None,
    sources: np.ndarray | None = None,
    uptake: np.ndarray | None = None,
) -> np.ndarray:
    """One LOD step by sparse direct solves (float64; returns a new array)."""
    c = np.array(fields, dtype=np.float64)
    n_fields = c.shape[0]
    shape = c.shape[1:]
    for k in range(n_fields):
        rhs = c[k] + (dt_s * sources[k] if sources is not None else 0.0)
        loss = decay_per_s[k] + (uptake[k] if uptake is not None else 0.0)
        x = (rhs / (1.0 + dt_s * loss)).ravel()
        g = None
        if conductance is not None:
            g = np.asarray(conductance, dtype=np.float64)
            g = g[k] if g.ndim == 4 and g.shape[0] > 1 else g.reshape(shape)
        coefficient = dt_s * diffusion_um2_s[k] / voxel_um**2
        for axis in range(3):
            x = spla.spsolve(axis_matrix(shape, axis, coefficient, g), x)
        c[k] = x.reshape(shape)
    return c


def explicit_euler_step(fields: np.ndarray, dt_s: float, voxel_um: float, diffusion_um2_s: Any, decay_per_s: Any) -> np.ndarray:
    """Forward-Euler 7-point step with no-flux ends (in place); stable for ``dt <= dx²/(6 D)``."""
    flux = np.empty_like(fields[0])
    for k in range(fields.shape[0]):
        c = fields[k]
        alpha = dt_s * diffusion_um2_s[k] / voxel_um**2
        change = c * (-dt_s * decay_per_s[k])
        for axis in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            face = flux[tuple(lo)]
            np.subtract(c[tuple(hi)], c[tuple(lo)], out=face)
            face *= alpha
            change[tuple(lo)] += face
            change[tuple(hi)] -= face
        c += change
    return fields
