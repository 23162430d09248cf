"""Griffe extension for the docs site: Sphinx roles in carabm's docstrings become links.

The docstrings use Sphinx cross-reference roles (:func:`get_backend`, :class:`~x.Y`,
:mod:`carabm.io.hdf5`), which Markdown would show verbatim. Each role becomes code that links
to the object's API entry when the target resolves inside carabm and is documented on the
site (an *optional* autorefs link, so a target that is not on the site is plain code, never a
broken link); other targets become plain code. reStructuredText's ``::`` literal-block markers
become a colon.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`(?P<target>[^`]+)`")
#: reStructuredText's literal-block marker: "Grammar::" before an indented block (Markdown shows
#: the indented block as code already) reads "Grammar:"; a "::" alone on its line goes.
LITERAL_AFTER_TEXT = re.compile(r"(?<=\S)::$", re.M)
LITERAL_ALONE = re.compile(r"^[ \t]*::$", re.M)


def _lookup(scope: Any, path: str) -> str | None:
    """The full path of ``path`` looked up from ``scope`` (a module or class), or None."""
    try:
        found = scope[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    try:
        return found.target_path if found.is_alias else found.path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def resolve(obj: Any, target: str, package: Any) -> str | None:
    """Where ``target`` (as written in the docstring of ``obj``) lives, searched as Sphinx would."""
    scopes = []
    if obj.is_class:
        scopes.append(obj)
    if obj.parent is not None and obj.parent.is_class:
        scopes.append(obj.parent)
    scopes.append(obj.module)
    for scope in scopes:
        path = _lookup(scope, target)
        if path:
            return path
    prefix = package.name + "."
    if target == package.name:
        return package.path
    if target.startswith(prefix):
        return _lookup(package, target[len(prefix):])
    return None


def replace_roles(text: str, obj: Any, package: Any) -> str:
    """``text`` with every Sphinx role replaced by code, linked where the target resolves."""

    def one(match: re.Match[str]) -> str:
        target = match.group("target").strip()
        shown = target
        if target.startswith("~"):
            target = target[1:]
            shown = target.rsplit(".", 1)[-1]
        target = target.lstrip(".").removesuffix("()")
        path = resolve(obj, target, package)
        if path is None:
            return f"`{shown}`"
        return f'<code><autoref identifier="{path}" optional>{shown}</autoref></code>'

    text = LITERAL_ALONE.sub("", LITERAL_AFTER_TEXT.sub(":", text))
    return ROLE.sub(one, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring once the whole package is loaded."""

    def _rewrite(self, package: Any) -> None:
        stack = [package]
        seen: set[int] = set()
        while stack:
            obj = stack.pop()
            if id(obj) in seen or obj.is_alias:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = replace_roles(obj.docstring.value, obj, package)
            stack.extend(obj.members.values())

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        """Griffe >= 2 hook."""
        self._rewrite(pkg)

    def on_package_loaded(self, *, pkg: Any, **kwargs: Any) -> None:
        """Griffe 1 hook."""
        self._rewrite(pkg)
