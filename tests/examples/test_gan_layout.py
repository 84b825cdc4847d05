"""The reference GAN's layout: each part of ``examples/spade_gan`` imports only the parts below it, in the order its
package docstring states, and every package says what it holds."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "spade_gan"

LAYERS = (
    {"images", "optional_packages", "command_line"},
    {"models"},
    {"data"},
    {"scoring"},
    {"training"},
    {"synthesis"},
    {"evaluation", "ablation", "studio"},
)
"""The parts of ``spade_gan``, lowest first: a module may import its own part and the parts of lower layers."""

MODULES = sorted(PACKAGE.rglob("*.py"))


def layer(part: str) -> int:
    return next(i for i, parts in enumerate(LAYERS) if part in parts)


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_parts(path: Path) -> set[str]:
    """The parts of ``spade_gan`` that the module at ``path`` imports (relative or absolute imports)."""
    package = path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module.split(".") if node.module else []
        if node.level:
            target = [*package[: len(package) - (node.level - 1)], *module]
        elif module[:1] == ["spade_gan"]:
            target = module[1:]
        else:
            continue
        parts |= {target[0]} if target else {alias.name for alias in node.names}
    return parts


def test_the_layers_name_every_part():
    tops = {part_of(path) for path in MODULES} - {"__init__"}
    assert tops == set().union(*LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_upward(path: Path):
    own = part_of(path)
    if own == "__init__":
        assert imported_parts(path) == set()
        return
    upward = {part for part in imported_parts(path) - {own} if layer(part) >= layer(own)}
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}) imports {sorted(upward)}, not below it"


def test_few_modules_at_the_top_and_a_docstring_per_package():
    top_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top_modules) <= 8, top_modules
    for init in [PACKAGE / "__init__.py", *PACKAGE.glob("*/__init__.py")]:
        name = ".".join(("spade_gan", *init.parent.relative_to(PACKAGE).parts))
        doc = importlib.import_module(name).__doc__ or ""
        assert len(doc.split()) > 20, name
