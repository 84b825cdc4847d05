"""Griffe extension for the docs build: render the Sphinx roles used in spadenorm's docstrings as Markdown.

spadenorm's docstrings are Google style with a few Sphinx/reST constructs (they also serve ``help()`` and
doctests). mkdocstrings renders Markdown, so before the docstrings are parsed this extension rewrites

* ``.. math::`` blocks into ``$$ ... $$`` display maths (rendered by pymdownx.arithmatex and MathJax);
* ``:math:`x``` into inline ``\\( x \\)``;
* ``:func:`name```, ``:class:`name``` (and ``meth``, ``attr``, ``data``, ``mod``, ``exc``) into a cross-reference
  when ``name`` is a documented ``spadenorm`` object, else into inline code. A leading ``~`` keeps only the last
  component of the name, as in Sphinx.

It only changes what the site shows; the source files are untouched. Used from ``mkdocs.yml``
(``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(func|class|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*\n(?P<body>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)+)", re.M)

# Objects rendered by the API pages: a reference to one of them becomes a link.
LINKABLE_PREFIXES = ("spadenorm.",)
UNLINKABLE = ("spadenorm._", "spadenorm.backends", "spadenorm.modules")


def _math_block(match: re.Match[str]) -> str:
    lines = [line.strip() for line in match.group("body").splitlines()]
    body = "\n".join(line for line in lines if line)
    indent = match.group("indent")
    return f"{indent}$$\n{indent}{body}\n{indent}$$\n\n"


def _role(match: re.Match[str], qualify) -> str:
    _, tilde, name = match.groups()
    shown = name.rsplit(".", 1)[-1] if tilde else name
    target = qualify(name)
    if target is None:
        return f"`{shown}`"
    return f"[`{shown}`][{target}]"


class RstRoles(griffe.Extension):
    """Rewrite reST roles and math blocks in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        def qualify(name: str) -> str | None:
            full = name if name.startswith("spadenorm") else None
            if full is None or full.startswith(UNLINKABLE) or not full.startswith(LINKABLE_PREFIXES):
                return None
            try:
                pkg[full[len("spadenorm.") :]]
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                return None
            return full

        seen: set[int] = set()

        def visit(obj: griffe.Object | griffe.Alias) -> None:
            if obj.is_alias or id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                text = obj.docstring.value
                text = _MATH_BLOCK.sub(_math_block, text + "\n").rstrip("\n")
                text = _MATH_ROLE.sub(lambda m: f"\\({m.group(1)}\\)", text)
                text = _ROLE.sub(lambda m: _role(m, qualify), text)
                obj.docstring.value = text
            for member in obj.members.values():
                visit(member)

        visit(pkg)
