"""Label masks of the lattice (``lattice.layout.kind: mask``): read from ``.npy`` or HDF5 files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from carabm.errors import ConfigError


def load_mask(path: str | Path, dataset: str | None = None) -> np.ndarray:
    """Read a label mask from ``.npy`` or HDF5 (``dataset`` names it; default ``lattice/compartment``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"lattice.layout.file: no such file {str(path)!r}")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with h5py.File(path, "r") as f:
            name = dataset or "lattice/compartment"
            if name not in f:
                raise ConfigError(f"lattice.layout.dataset: {name!r} not found in {str(path)!r}")
            return f[name][()]
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"lattice.layout.file: cannot read {str(path)!r} as .npy or HDF5 ({exc})") from exc
