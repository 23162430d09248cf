"""Where numba keeps compiled machine code: the user's cache folder, never the installed package.

numba's default (``cache=True``) writes ``__pycache__`` files beside the source, i.e. into
``site-packages/carabm``: that fails on a read-only install (``docker run --user``) and
leaves files behind that turn a later ``import carabm`` into an empty namespace package
after ``pip uninstall``. :func:`configure` (called before any ``@njit``) points
``NUMBA_CACHE_DIR`` at ``platformdirs.user_cache_dir("carabm")/numba``, or a folder in the
temporary directory when that is not writable, or turns caching off (compiling each
process) when nothing is; a user's own ``NUMBA_CACHE_DIR`` is kept.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("carabm")

_chosen: list[bool] = []


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".carabm-probe-"):
            pass
    except OSError:
        return False
    return True


def candidates() -> list[Path]:
    """Cache folders in order of preference."""
    from platformdirs import user_cache_dir  # noqa: PLC0415

    user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "user")
    return [Path(user_cache_dir("carabm")) / "numba", Path(tempfile.gettempdir()) / f"carabm-numba-{user}"]


def configure() -> bool:
    """Choose numba's cache folder once per process; True when compiled code may be cached."""
    if _chosen:
        return _chosen[0]
    own = os.environ.get("NUMBA_CACHE_DIR")
    folder = Path(own) if own else next((c for c in candidates() if _writable(c)), None)
    ok = folder is not None and _writable(folder)
    if ok:
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
    else:
        log.debug("numba cache: no writable folder (%s); compiling without a cache", own or "user cache and temp")
    numba_config = sys.modules.get("numba.core.config")
    if ok and numba_config is not None:  # numba already imported (by the user): tell it too
        numba_config.CACHE_DIR = str(folder)
    _chosen.append(ok)
    return ok


#: the ``cache=`` argument for ``numba.njit`` in carabm
CACHE = configure()
