"""carabm: an agent-based 3D simulator of CAR-T cell therapy toxicities (CRS and ICANS)."""

from __future__ import annotations

__version__ = "0.1.0"
#: layout of the run file: 2 = netCDF-4/CF (fields as [time_h, z, y, x] arrays, docs/outputs.md); 1 = one group per snapshot (still read)
SCHEMA_VERSION = 2

__all__ = ["__version__", "SCHEMA_VERSION", "load_config", "run", "open_run"]


def load_config(path, overrides=()):  # noqa: ANN001, ANN201
    """Read, override and validate a YAML run configuration (see :mod:`carabm.io.config`).

    ``path`` may also be the name of a shipped config (``"quickstart"``; ``carabm config list``).
    """
    import carabm.biology  # noqa: F401, PLC0415  (registers the built-in model in the catalog)
    from carabm.io.config import load_config as _load  # noqa: PLC0415
    from carabm.io.shipped import resolve_config  # noqa: PLC0415

    return _load(resolve_config(path, kind="run") if path is not None else None, overrides)


def run(config, out=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
    """Run a simulation described by a config (path, shipped name or object); see :func:`carabm.simulation.run`.

    Returns a dict: ``out``, ``steps``, ``steps_run``, ``time_h``, ``wall_s``, ``backend``,
    ``final`` (last time-series row) and ``summary`` (a :class:`carabm.io.summary.RunSummary`;
    ``print(result["summary"])`` shows what ``carabm run`` prints).
    """
    from carabm.simulation import run as _run  # noqa: PLC0415

    return _run(config, out=out, **kwargs)


def open_run(path):  # noqa: ANN001, ANN201
    """Open a run's time series as an ``xarray.Dataset`` (see :mod:`carabm.io.runfile`)."""
    from carabm.io.runfile import open_run as _open  # noqa: PLC0415

    return _open(path)
