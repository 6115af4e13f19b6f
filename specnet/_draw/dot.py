"""A :class:`~.graph.Drawing` as Graphviz DOT text: boxes, shape-labelled edges, nested
clusters. Every element gets an ``id`` and ``class`` that the SVG keeps (``class`` lists the
clusters holding it), which is what the HTML page folds and explains by."""

from __future__ import annotations

from .graph import Box, Cluster, Drawing

__all__ = ["dot_text"]


def quote(text: str) -> str:
    """A DOT double-quoted string (a backslash-n in it is a line break)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**values: str) -> str:
    return "[" + ", ".join(f"{k}={quote(v)}" for k, v in values.items()) + "]"


def _id(box_id: str) -> str:
    """A box's DOT id: quoted (an input may be called ``node`` or ``image-a``)."""
    return quote(box_id)


def _box(box: Box) -> str:
    if box.kind != "layer":
        return f"{_id(box.id)} " + _attrs(
            id=f"box-{box.id}",
            label=box.args,
            shape="oval",
            style="filled",
            fillcolor="#e8eef7",
            tooltip=f"{box.kind} {box.output}",
            **{"class": "io"},
        )
    short = box.name.rsplit(".", 1)[-1] or box.type
    lines = [short if short == box.type else f"{short}: {box.type}"]
    if box.args:
        lines.append(box.args)
    if box.params:
        lines.append(f"{box.params:,} params")
    tooltip = "\n".join(f"{k}: {v}" for k, v in box.details.items() if v)
    return f"{_id(box.id)} " + _attrs(
        id=f"box-{box.id}",
        label="\n".join(lines),
        tooltip=tooltip,
        **{"class": " ".join(["layer", *(f"in-{c}" for c in box.clusters)])},
    )


def _cluster_label(c: Cluster) -> str:
    what = f"{c.block} (block)" if c.block else c.type
    params = f" · {c.params:,} params" if c.params else ""
    return f"{c.name} · {what}{params}"


def dot_text(d: Drawing) -> str:
    """The DOT source of ``d``, top to bottom."""
    lines = [
        "digraph specnet {",
        "  graph "
        + _attrs(
            rankdir="TB",
            fontname="Helvetica",
            fontsize="11",
            tooltip=d.title,
            label=f"{d.title} · {d.total_params:,} parameters",
            labelloc="t",
            nodesep="0.25",
            ranksep="0.35",
        ),
        "  node "
        + _attrs(
            shape="box",
            style="rounded,filled",
            fillcolor="#ffffff",
            fontname="Helvetica",
            fontsize="10",
        ),
        "  edge " + _attrs(fontname="Helvetica", fontsize="9", color="#555555"),
    ]
    children: dict[str | None, list[Cluster]] = {}
    for c in d.clusters.values():
        children.setdefault(c.parent, []).append(c)
    direct: dict[str | None, list[Box]] = {}
    for b in d.boxes.values():
        direct.setdefault(b.clusters[-1] if b.clusters else None, []).append(b)

    def emit(parent: str | None, indent: str) -> None:
        for b in direct.get(parent, []):
            lines.append(indent + _box(b))
        for c in children.get(parent, []):
            ancestors = []
            up = c.parent
            while up is not None:
                ancestors.append(up)
                up = d.clusters[up].parent
            lines.append(f"{indent}subgraph cluster_{c.id} {{")
            lines.append(
                indent
                + "  graph "
                + _attrs(
                    id=f"cluster-{c.id}",
                    label=_cluster_label(c),
                    style="rounded,filled",
                    fillcolor="#f7f3e8" if c.block else "#f4f6f8",
                    color="#b0a27a" if c.block else "#9aa5b1",
                    labeljust="l",
                    tooltip=_cluster_label(c),
                    **{"class": " ".join(["cluster", *(f"in-{a}" for a in ancestors)])},
                )
            )
            emit(c.id, indent + "  ")
            lines.append(indent + "}")

    emit(None, "  ")
    for i, e in enumerate(d.edges):
        lines.append(
            f"  {_id(e.tail)} -> {_id(e.head)} "
            + _attrs(
                label=e.label,
                id=f"edge-{i}",
                **{"class": " ".join(["shape", *(f"in-{c}" for c in e.clusters)])},
            )
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
