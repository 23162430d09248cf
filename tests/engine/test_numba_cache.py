"""numba's compiled-code cache goes to the user's cache folder, never into the installed package."""

import os
import subprocess
import sys
from pathlib import Path

import carabm

PACKAGE = Path(carabm.__file__).parent
COMPILE = """
import os, sys
import numpy as np
from carabm.engine import rng_compiled
rng_compiled._build_kernel(False)(np.arange(4, dtype=np.int64), 2, 3, 4, 5, np.empty((4, 4), np.uint32))
from carabm.engine import _fields_numba
print(os.environ.get("NUMBA_CACHE_DIR", "unset"))
"""


def _run(env_changes, cwd):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", COMPILE], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _index_files(folder):
    return sorted(p for p in Path(folder).rglob("*.nbi"))


def test_cache_goes_to_the_user_cache_folder_not_the_package(tmp_path):
    before = _index_files(PACKAGE)
    done = _run({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "xdg" / "carabm" / "numba")]
    assert _index_files(tmp_path / "xdg"), "nothing was cached in the user cache folder"
    assert _index_files(PACKAGE) == before, "numba wrote into the installed package"


def test_a_users_own_cache_folder_is_kept(tmp_path):
    done = _run({"NUMBA_CACHE_DIR": str(tmp_path / "mine"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "mine")]
    assert _index_files(tmp_path / "mine") and not (tmp_path / "xdg").exists()


def test_nothing_writable_still_runs(tmp_path):
    before = _index_files(PACKAGE)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            return
        done = _run({"XDG_CACHE_HOME": str(locked), "TMPDIR": str(locked), "NUMBA_CACHE_DIR": ""}, tmp_path)
    finally:
        locked.chmod(0o700)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _index_files(PACKAGE) == before
