"""The layout of ../shared/DESIGN.md, checked from the source: the command lines are imported by no
module, notebook or one another, and the pure numerics and tables run without TensorFlow."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMAND_LINES = {"fid", "classify", "compare", "generate"}


def imported_modules(source):
    """Every module name an import statement of `source` names (top level or inside a function)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources():
    """(name, source) of every module of the repository root and every notebook's code cells."""
    for path in sorted(REPO.glob("*.py")):
        yield path.name, path.read_text()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        yield path.name, "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("name, source", list(sources()), ids=[name for name, _ in sources()])
def test_no_module_or_notebook_imports_a_command_line(name, source):
    own = Path(name).stem
    assert not (imported_modules(source) & (COMMAND_LINES - {own})), name


@pytest.mark.parametrize("module", ["metrics", "tables"])
def test_the_numerics_and_tables_import_no_tensorflow(module):
    code = f"import sys, {module}; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_the_longest_first_order_names_test_files_that_exist():
    from conftest import LONGEST_FIRST
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    assert [name for name in LONGEST_FIRST if not (REPO / "tests" / name).is_file()] == []
