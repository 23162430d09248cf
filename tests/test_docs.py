"""Generated documentation and configs stay true to the schema."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_parameter_table_and_default_config_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_parameter_table.py"), "--check"], capture_output=True)
    assert result.returncode == 0, "run: python scripts/make_parameter_table.py"


def test_readme_lists_the_catalogs_drugs():
    import re  # noqa: PLC0415

    from carabm.io.catalog import drug_names  # noqa: PLC0415

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"Drugs: `([^`]+)`", text.replace("\n", " "))
    assert listed and listed.group(1).split() == list(drug_names())
