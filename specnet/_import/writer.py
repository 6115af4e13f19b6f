"""YAML text for an imported spec: one node per line where it fits, shapes as comments."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dump"]

WIDTH = 110
"""The longest line (before its comment) a node is written on in flow style; longer ones
are written as blocks."""
_NESTED = ("layers", "nodes", "body")


def flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    text = text.strip()
    return text.removesuffix("\n...").strip()


def key(k: Any) -> str:
    return flow(k)


def _visible(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (isinstance(k, str) and k.startswith(("#", "!")))}


def _is_node(v: Any) -> bool:
    return isinstance(v, dict) and "type" in v


def _comment(d: dict[str, Any]) -> str:
    text = d.get("#")
    note = d.get("!custom")
    parts = [
        p for p in (text, f"custom: register {note} with specnet.register" if note else None) if p
    ]
    return f"  # {'; '.join(parts)}" if parts else ""


def _compact(d: dict[str, Any]) -> bool:
    return not any(k in _NESTED or _is_node(v) for k, v in d.items())


def node_lines(prefix: str, d: Any, indent: int) -> list[str]:
    """``prefix`` is ``name:`` or ``-``; the node at ``indent`` spaces."""
    pad = " " * indent
    if not isinstance(d, dict):
        return [f"{pad}{prefix} {flow(d)}"]
    seen = _visible(d)
    comment = _comment(d)
    if list(seen) == ["type"]:
        return [f"{pad}{prefix} {seen['type']}{comment}"]
    if _compact(seen):
        line = f"{pad}{prefix} {flow(seen)}"
        if len(line) <= WIDTH:
            return [line + comment]
    lines: list[str] = []
    inner = indent + 2
    entries = list(seen.items())
    if prefix == "-":
        first = True
        lines_for = _entries(entries, inner)
        for line in lines_for:
            if first:
                lines.append(f"{pad}- {line.lstrip()}{comment}")
                first = False
            else:
                lines.append(line)
        return lines
    lines.append(f"{pad}{prefix}{comment}")
    lines.extend(_entries(entries, inner))
    return lines


def _entries(entries: list[tuple[str, Any]], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for k, v in entries:
        if k in ("layers", "nodes") and isinstance(v, (list, dict)):
            lines.append(f"{pad}{key(k)}:")
            if isinstance(v, list):
                for child in v:
                    lines.extend(node_lines("-", child, indent + 2))
            else:
                for name, child in v.items():
                    lines.extend(node_lines(f"{key(name)}:", child, indent + 2))
        elif _is_node(v) or k == "body":
            lines.extend(node_lines(f"{key(k)}:", v, indent))
        else:
            lines.append(f"{pad}{key(k)}: {flow(v)}")
    return lines


def dump(doc: dict[str, Any], header: list[str]) -> str:
    """The document's text, ``header`` lines (comments) first."""
    lines = list(header)
    for k, v in doc.items():
        if k == "model":
            lines.append("")
            lines.extend(node_lines("model:", v, 0))
        elif k == "blocks":
            lines.append("")
            lines.append("blocks:")
            for name, block in v.items():
                lines.append(f"  {key(name)}:")
                lines.append(f"    params: {flow(block['params'])}")
                lines.extend(node_lines("body:", block["body"], 4))
        else:
            lines.append(f"{key(k)}: {flow(v)}")
    return "\n".join(lines) + "\n"
