"""scripts/gpu_kernels.py, the driver gpu_check runs under compute-sanitizer, on the host emulation of the kernels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_kernels.py"


def load_driver():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("_gpu_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_driver_launches_every_kernel_of_the_sources(emulator) -> None:
    driver = load_driver()
    launched = driver.drive(np, emulator, "small")
    assert driver.missing(launched) == []
    modules = {path.stem for path in (SCRIPT.parents[1] / "kernels").glob("*.cu")}
    assert {module for module, _ in driver.all_kernels()} == modules and len(driver.all_kernels()) > len(modules)
    assert driver.missing(launched[:3]) != []  # and a partial run would be reported
