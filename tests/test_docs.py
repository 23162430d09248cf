"""Generated documentation and configs stay true to the schema."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_parameter_table_and_default_config_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_parameter_table.py"), "--check"], capture_output=True)
    assert result.returncode == 0, "run: python scripts/make_parameter_table.py"
