"""The 3D lattice: shape ``[nz, ny, nx]``, voxel size, and compartment labels.

Compartments are engine-level geometry (TISSUE, BLOOD, BBB, CNS); which cells live
where is the biology's business. The builder makes the default layout (masks from files: carabm.io.masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TISSUE, BLOOD, BBB, CNS = 0, 1, 2, 3
COMPARTMENTS: dict[str, int] = {"tissue": TISSUE, "blood": BLOOD, "bbb": BBB, "cns": CNS}
COMPARTMENT_NAMES: tuple[str, ...] = tuple(COMPARTMENTS)

#: the 6 face neighbours (dz, dy, dx)
OFFSETS_6 = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=np.int32)
#: the 26 neighbours of the Moore neighbourhood
OFFSETS_26 = np.array(
    [[dz, dy, dx] for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) != (0, 0, 0)],
    dtype=np.int32,
)


def neighbour_offsets(connectivity: int) -> np.ndarray:
    """Offsets ``[m, 3]`` (z, y, x) of the 6- or 26-neighbourhood."""
    if connectivity == 6:
        return OFFSETS_6
    if connectivity == 26:
        return OFFSETS_26
    raise ValueError(f"connectivity must be 6 or 26, got {connectivity}")


@dataclass
class Lattice:
    """A labelled voxel grid. ``labels`` is a host uint8 array ``[nz, ny, nx]``."""

    labels: np.ndarray
    voxel_um: float

    def __post_init__(self) -> None:
        self.labels = np.ascontiguousarray(self.labels, dtype=np.uint8)
        if self.labels.ndim != 3:
            raise ValueError(f"labels must be 3D [nz, ny, nx], got shape {self.labels.shape}")
        bad = np.setdiff1d(np.unique(self.labels), list(COMPARTMENTS.values()))
        if bad.size:
            raise ValueError(f"labels hold unknown compartment codes {bad.tolist()}; allowed {COMPARTMENTS}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nz, ny, nx)``."""
        return tuple(int(s) for s in self.labels.shape)  # type: ignore[return-value]

    @property
    def n_voxels(self) -> int:
        """Number of voxels."""
        return int(self.labels.size)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1 cm^3 = 1e12 µm^3)."""
        return float(self.voxel_um) ** 3 * 1e-12

    def mask(self, compartment: str | int) -> np.ndarray:
        """Boolean host mask of one compartment (by name or code)."""
        code = COMPARTMENTS[compartment] if isinstance(compartment, str) else int(compartment)
        return self.labels == code

    def count(self, compartment: str | int) -> int:
        """Number of voxels in a compartment."""
        return int(self.mask(compartment).sum())

    def counts(self) -> dict[str, int]:
        """Voxels per compartment name."""
        return {name: self.count(code) for name, code in COMPARTMENTS.items()}

    def flat_indices(self, compartment: str | int) -> np.ndarray:
        """Flat (C-order) indices of a compartment's voxels, ascending, int64."""
        return np.flatnonzero(self.mask(compartment).ravel())

    def faces_between(self, a: str | int, b: str | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces between compartments ``a`` and ``b``.

        Returns ``(index_a, index_b, axis)``: flat indices of the voxel on the ``a``
        side and on the ``b`` side of each face, and the axis (0=z, 1=y, 2=x) it is normal to.
        """
        code_a = COMPARTMENTS[a] if isinstance(a, str) else int(a)
        code_b = COMPARTMENTS[b] if isinstance(b, str) else int(b)
        flat = np.arange(self.n_voxels, dtype=np.int64).reshape(self.shape)
        out_a, out_b, out_axis = [], [], []
        for axis in range(3):  # three axes, not voxels
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            lab_lo, lab_hi = self.labels[tuple(lo)], self.labels[tuple(hi)]
            idx_lo, idx_hi = flat[tuple(lo)], flat[tuple(hi)]
            fwd = (lab_lo == code_a) & (lab_hi == code_b)
            bwd = (lab_lo == code_b) & (lab_hi == code_a)
            out_a += [idx_lo[fwd], idx_hi[bwd]]
            out_b += [idx_hi[fwd], idx_lo[bwd]]
            out_axis += [np.full(int(fwd.sum() + bwd.sum()), axis, dtype=np.int8)]
        return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_axis)

    def neighbour_labels(self, connectivity: int = 6, outside: int = 255) -> np.ndarray:
        """Labels of each voxel's neighbours, ``[m, nz, ny, nx]`` (``outside`` beyond the edge)."""
        padded = np.pad(self.labels, 1, constant_values=outside)
        nz, ny, nx = self.shape
        offsets = neighbour_offsets(connectivity)
        return np.stack([padded[1 + dz : 1 + dz + nz, 1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx] for dz, dy, dx in offsets])

    def centres_um(self, flat_index: Any) -> np.ndarray:
        """Voxel centres in µm ``[n, 3]`` (z, y, x) for flat indices."""
        zyx = np.stack(np.unravel_index(np.asarray(flat_index), self.shape), axis=-1)
        return (zyx + 0.5) * self.voxel_um


def _voxels(length_um: float, voxel_um: float) -> int:
    return max(1, int(round(length_um / voxel_um)))


def _vessel_centres(extent_um: float, spacing_um: float | None) -> list[float]:
    """Vessel centres along one axis of the tissue block: its middle, or a centred grid ``spacing_um`` apart."""
    if spacing_um is None:
        return [extent_um / 2]
    n = max(1, int(round(extent_um / spacing_um)))
    start = (extent_um - n * spacing_um) / 2
    return [start + (i + 0.5) * spacing_um for i in range(n)]


def default_layout(
    shape: tuple[int, int, int],
    voxel_um: float,
    tissue_fraction: float = 0.6,
    vessel_radius_um: float = 30.0,
    brain_vessel_width_um: float = 40.0,
    bbb_thickness_um: float = 20.0,
    vessel_spacing_um: float | None = None,
) -> np.ndarray:
    """Labels for the default geometry, along x (the last axis).

    ``[tissue with a vessel along z | brain vessel (blood) | BBB layer | CNS]``: the
    tissue block (a tumour site) holds a blood vessel of radius ``vessel_radius_um``
    running along z through its centre; next comes a slab of brain-vessel blood, one BBB
    layer, and the CNS parenchyma, which touches blood only through the BBB.

    ``vessel_spacing_um``: instead of one vessel, a square grid of them across the tissue
    block (y and x), this far apart: ``max(1, round(extent / spacing))`` vessels per axis,
    the grid centred. A spacing equal to the block's extent is the single central vessel, so
    a block twice as wide with the same spacing holds the same tissue twice over.
    """
    nz, ny, nx = shape
    labels = np.full(shape, TISSUE, dtype=np.uint8)
    nx_tissue = int(round(nx * tissue_fraction))
    nx_vessel = _voxels(brain_vessel_width_um, voxel_um)
    nx_bbb = _voxels(bbb_thickness_um, voxel_um)
    if nx_tissue < 3 or nx - nx_tissue - nx_vessel - nx_bbb < 1:
        raise ValueError(
            f"nx = {nx} is too small for the default layout "
            f"(needs >= 3 tissue + {nx_vessel} vessel + {nx_bbb} BBB + 1 CNS voxels along x)"
        )
    y = (np.arange(ny) + 0.5) * voxel_um
    x = (np.arange(nx_tissue) + 0.5) * voxel_um
    radius2 = max(vessel_radius_um, voxel_um / 2) ** 2
    tube = np.zeros((ny, nx_tissue), dtype=bool)
    for cy in _vessel_centres(ny * voxel_um, vessel_spacing_um):
        for cx in _vessel_centres(nx_tissue * voxel_um, vessel_spacing_um):
            tube |= (y[:, None] - cy) ** 2 + (x[None, :] - cx) ** 2 <= radius2
    labels[:, :, :nx_tissue][:, tube] = BLOOD
    x0 = nx_tissue
    labels[:, :, x0 : x0 + nx_vessel] = BLOOD
    labels[:, :, x0 + nx_vessel : x0 + nx_vessel + nx_bbb] = BBB
    labels[:, :, x0 + nx_vessel + nx_bbb :] = CNS
    return labels
