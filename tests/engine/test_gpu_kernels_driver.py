"""scripts/gpu_kernels.py, the driver gpu_check runs under compute-sanitizer, on the host emulation of the kernels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

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


def test_event_timer_queues_a_lead_and_sums_per_kernel() -> None:
    # CuPy stand-in: events stamp a clock that each launch advances by its kernel's cost
    driver = load_driver()
    clock = {"t": 0.0}
    cost = {"spin": 0.5, "sweep_y": 2.0, "apply_moves": 0.25}

    class Event:
        def record(self) -> None:
            self.t = clock["t"]

    cuda = SimpleNamespace(Event=Event, get_elapsed_time=lambda a, b: b.t - a.t,
                           Device=lambda: SimpleNamespace(synchronize=lambda: None))  # fmt: skip
    calls = []

    def launch(module, kernel, grid, block, args) -> None:  # noqa: ANN001
        calls.append(kernel)
        clock["t"] += cost[kernel]

    timer = driver.EventTimer(SimpleNamespace(cuda=cuda), launch, lead_ns=1000)
    for module, kernel in (("diffusion_lod", "sweep_y"), ("movement", "apply_moves"), ("diffusion_lod", "sweep_y")):
        timer(module, kernel, (1,), (1,), ())
    assert calls == ["spin", "sweep_y", "spin", "apply_moves", "spin", "sweep_y"]  # the lead is outside each pair
    assert timer.summary() == {
        "diffusion_lod.sweep_y": {"launches": 2, "total_ms": 4.0, "mean_ms": 2.0},
        "movement.apply_moves": {"launches": 1, "total_ms": 0.25, "mean_ms": 0.25},
    }
