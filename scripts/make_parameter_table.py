"""Write docs/parameters.md: every config key with its default, unit/source text and meaning.

Generated from the pydantic schema in carabm/io/config.py, so the table cannot drift from
the code: ``python scripts/make_parameter_table.py`` (a test checks the file is current).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from carabm.io.config import Config, CytokineMap

OUT = Path(__file__).parents[1] / "docs" / "parameters.md"


def _default_text(value: Any) -> str:
    if isinstance(value, CytokineMap):
        return ", ".join(f"{k}: {v:g}" for k, v in value.model_dump().items() if v)
    if isinstance(value, tuple):
        return str(list(value))
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def rows(model: type[BaseModel], instance: BaseModel, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, description) for every leaf of a section."""
    out: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        value = getattr(instance, name)
        path = f"{prefix}{name}"
        is_map = isinstance(value, CytokineMap)
        if isinstance(value, BaseModel) and not is_map:
            out += rows(type(value), value, path + ".")
        else:
            out.append((path, _default_text(value), (field.description or "").replace("|", "/")))
    return out


def render() -> str:
    """The Markdown text of the table."""
    lines = [
        "# Parameters",
        "",
        "Generated from `carabm/io/config.py` by `python scripts/make_parameter_table.py`; do not edit by hand.",
        "Units are in brackets; \"assumed\" marks a value without a checked source, with the reasoning.",
        "Cytokine maps (e.g. `secretion_pg_cell_h`) list their non-zero defaults; unnamed cytokines are 0.",
        "",
        "| key | default | unit, source and meaning |",
        "|---|---|---|",
    ]
    config = Config()
    lines += [f"| `{path}` | {default} | {text} |" for path, default, text in rows(Config, config) if path != "therapies"]
    lines += ["", "`therapies`: a list of `{drug, start_h | when, dose_mg_kg | dose_mg, every_h, max_doses, min_interval_h}`;",
              "see the drug table in `carabm/biology/drugs.py` for doses, half-lives and sources.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
