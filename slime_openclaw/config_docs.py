"""The configuration keys as a Markdown table, generated from the config dataclasses.

``python -m slime_openclaw.config --markdown`` prints it (the README's key table is this
output). Each key's meaning is the docstring written under its field in config.py; the
default is the dataclass default as it would be written in YAML. Nothing here parses a
configuration; config.py does.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from collections.abc import Sequence
from typing import Any

from slime_openclaw import config as cfg


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written right under the field in ``cls``'s source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = following.value.value if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) else None
        if isinstance(text, str):
            docs[node.target.id] = " ".join(text.split())
    return docs


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _yaml_value(value: Any) -> str:
    if value is None:
        return "(empty)"
    if hasattr(value, "value"):  # enums
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    if value == "":
        return '""'
    return json.dumps(value) if not isinstance(value, str) else value


def key_rows() -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every ``openclaw_*`` key, in declaration order."""
    rows: list[tuple[str, str, str]] = []
    top_docs = field_docs(cfg.OpenClawConfig)
    for f in dataclasses.fields(cfg.OpenClawConfig):
        section = cfg._SECTIONS.get(f.name)
        if section is None:
            rows.append((f"{cfg.PREFIX}{f.name}", _yaml_value(_default(f)), top_docs.get(f.name, "")))
            continue
        docs = field_docs(section)
        for sf in dataclasses.fields(section):
            rows.append((f"{cfg.PREFIX}{f.name}_{sf.name}", _yaml_value(_default(sf)), docs.get(sf.name, "")))
    return rows


def markdown_table() -> str:
    """The key table in Markdown."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, meaning in key_rows():
        escaped = meaning.replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | {escaped} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m slime_openclaw.config --markdown``: print the key table (README)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m slime_openclaw.config", description=main.__doc__)
    parser.add_argument("--markdown", action="store_true", help="print every openclaw_* key as a Markdown table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(), end="")
    else:
        for key, default, _ in key_rows():
            print(f"{key}: {default}")
    return 0
