"""Plug-ins: modules or ``.py`` files named by a config's ``plugins:`` that register into the catalog.

A plug-in is imported once per process; importing it registers its cell types, cytokines,
drugs or layers (:mod:`carabm.biology.api`, docs/extending.md). Failures are one line each.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from carabm.errors import ConfigError
from carabm.io.catalog import CATALOG


def is_file_plugin(name: str) -> bool:
    """A plug-in given as a path to a ``.py`` file (else a module name)."""
    return name.endswith(".py") or "/" in name or "\\" in name


def resolve_plugin(name: str, base: Path) -> str:
    """A file plug-in's absolute path (relative paths are relative to ``base``, the config's folder)."""
    if not is_file_plugin(name) or Path(name).is_absolute():
        return name
    return str((base / name).resolve())


def _import_file(path: Path) -> None:
    module_name = "carabm_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python file: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise


def load_plugins(names: list[str]) -> None:
    """Import every plug-in not yet loaded; a plug-in that cannot be loaded is a :class:`ConfigError` line."""
    problems = []
    for i, name in enumerate(names):
        if name in CATALOG.plugins:
            continue
        try:
            if is_file_plugin(name):
                path = Path(name)
                if not path.is_file():
                    raise FileNotFoundError(f"no such file {name!r}")
                _import_file(path)
            elif name in sys.modules:  # imported, but its registrations were undone (Catalog.restore)
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the plug-in's own code failed: one line naming it
            problems.append(f"plugins[{i}]: cannot load plug-in {name!r} ({exc.__class__.__name__}: {exc})")
            continue
        CATALOG.plugins.append(name)
    if problems:
        raise ConfigError(problems)
