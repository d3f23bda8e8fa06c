"""Every hook is documented in docs/plugins.md (datasette's rule)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from crane_kernel import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _hooks() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if name.startswith("crane_") and callable(fn)}


def test_there_are_hooks():
    assert len(_hooks()) >= 13


def test_every_hook_is_documented_with_its_signature():
    text = DOCS.read_text()
    for name, sig in _hooks().items():
        args = ", ".join(sig.parameters)
        heading = f"### `{name}({args})`"
        assert heading in text, f"docs/plugins.md lacks the heading {heading}"


def test_every_hookspec_has_a_docstring():
    for name in _hooks():
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 40, f"{name} needs a docstring"


def test_no_documented_hook_is_missing_from_the_code():
    documented = set(re.findall(r"^### `(crane_\w+)\(", DOCS.read_text(), re.M))
    assert documented == set(_hooks())
