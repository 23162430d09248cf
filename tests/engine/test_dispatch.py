"""The one NumPy/CuPy dispatch: ``backend.launcher_for`` and ``backend.on_device``."""

import numpy as np

from carabm.engine import scatter
from carabm.engine.backend import get_backend, launcher_for, on_device


def test_host_data_takes_the_numpy_path_unless_given_a_launcher():
    def emulator(*args):
        return None

    row = np.zeros(4, dtype=np.float32)
    assert launcher_for(row) is None and launcher_for(np) is None and launcher_for(get_backend("numpy")) is None
    assert launcher_for(row, emulator) is emulator and launcher_for(np, emulator) is emulator
    assert not on_device(row) and not on_device(np) and not get_backend("numpy").is_gpu


def test_a_given_launcher_is_the_one_called():
    calls = []
    row = np.zeros(4, dtype=np.float32)
    scatter.add_counts(row, np.array([1, 1, 3]), None, 2.0, launcher=lambda *args: calls.append(args[:2]))
    assert calls == [("scatter", "scatter_counts")] and not row.any()  # the kernel path, not NumPy's
    scatter.add_counts(row, np.array([1, 1, 3]), None, 2.0)
    assert row.tolist() == [0.0, 4.0, 0.0, 2.0]
