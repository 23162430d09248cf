"""Shared fixtures: the array backends to run on, and small configs."""

from __future__ import annotations

import pytest

import carabm.biology  # noqa: F401  (registers the built-in model in the catalog, as the CLI and carabm.load_config do)
from carabm.engine.backend import get_backend, gpu_code_available

BACKENDS = ["numpy"] + (["cupy"] if gpu_code_available() else [])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a usable CUDA GPU (skipped elsewhere)")
    config.addinivalue_line("markers", "slow: runs the model for many steps")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_code_available():
        return
    skip = pytest.mark.skip(reason="no usable CUDA GPU (CuPy missing or no device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest):
    """Each available backend: NumPy always, CuPy where a GPU is usable."""
    return get_backend(request.param)


@pytest.fixture
def xp(backend):
    """The array module of each available backend."""
    return backend.xp
