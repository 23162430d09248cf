"""The layers never cross: engine <- io <- biology <- simulation <- cli/hpc/viewer (docs/extending.md).

Every import statement of the package, also those inside functions, goes to the same or a lower layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "carabm"
#: layer rank of each part of the package (modules not listed are in the top layer)
RANK = {"carabm.errors": 0, "carabm.engine": 0, "carabm.io": 1, "carabm.biology": 2, "carabm.simulation": 3,
        "carabm.progress": 3}  # fmt: skip
TOP = 4
#: the package root holds only the version and lazy entry points; any layer may read the version
ROOT = "carabm"


def rank(module: str) -> int:
    return next((r for prefix, r in RANK.items() if module == prefix or module.startswith(prefix + ".")), TOP)


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if node.module == ROOT]
    return [n for n in names if n.startswith(ROOT + ".")]


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for name in imports(path):
            if rank(name) > rank(module):
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_only_the_backend_imports_cupy():
    users = [p.name for p in PACKAGE.rglob("*.py") if any(n == "cupy" or n.startswith("cupy.") for n in _all_imports(p))]
    assert users == ["backend.py"]


def _all_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names] + [
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    ]


def test_the_engine_reads_no_files_of_the_run():
    """Masks, configs and run files are io's: no engine module imports h5py or yaml."""
    users = [p.name for p in (PACKAGE / "engine").glob("*.py") if {"h5py", "yaml"} & set(_all_imports(p))]
    assert users == []
