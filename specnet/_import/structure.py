"""A converted module tree as a spec a person would write.

``Sequential`` where a module's graph is a chain, ``Graph`` only where it branches; a block
for each class whose instances repeat with the same structure (its parameters the values
that differ between them); ``repeat`` for identical neighbours and ``for`` tables for
neighbours that differ in a few arguments. Each node carries its example output shape as
``"#"`` (written as a comment) and, for blocks, its class as ``"!cls"``; :func:`clean`
drops those keys.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from specnet._front.registry import CONTAINERS, layers
from specnet._front.validate.blocks import PARAM_TYPES

from .leaves import has_state, tensor_type
from .problems import qualname
from .trace import Converted, Item

__all__ = ["clean", "make_blocks", "model_node", "shorten"]

Data = dict[str, Any]

PLACEMENT = ("input", "call", "repeat", "for", "if", "#")
"""Keys of a node that say where it sits, not what it is (not part of a block's body)."""
_STRUCTURE = ("type", "layers", "nodes", "inputs", "output", "train_output")


def shape_text(value: Any, batched: bool) -> str | None:
    if isinstance(value, torch.Tensor):
        return str(tensor_type(value, batched and value.dim() > 0))
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        parts = [shape_text(v, batched) for v in value]
        return "(" + ", ".join(p for p in parts if p) + ")"
    return None


GENERIC = "~container"
"""The class mark of a container whose class says nothing (an ``nn.Sequential``, a built
spec's graph): its blocks are named after where it is used."""


def _mark(m: nn.Module) -> str:
    """What groups a module's instances into blocks: its class, where the class is the
    user's; a generic mark for torch's and specnet's own containers."""
    mod = type(m).__module__
    if mod.startswith(("torch.", "specnet.")):
        return GENERIC
    return qualname(type(m))


def item_node(it: Item) -> Data:
    if it.body is not None:
        d = container(it.body)
    else:
        d = {"type": it.type, **it.args}
        if it.custom is not None:
            d["!custom"] = qualname(it.custom)
    text = shape_text(it.out, it.batched)
    if text:
        d["#"] = text
    return d


def container(c: Converted) -> Data:
    if not c.items and len(c.inputs) == 1 and c.outputs == c.inputs and not c.train_outputs:
        return {"type": "Identity"}  # a forward that returns its input
    d = _sequential(c) or _graph(c)
    d["!cls"] = _mark(c.module)
    if d["!cls"] != GENERIC:
        d["!attrs"] = {
            k: v
            for k, v in vars(c.module).items()
            if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float))
        }
    return d


def _sequential(c: Converted) -> Data | None:
    if len(c.inputs) != 1 or not c.items or c.train_outputs:
        return None
    prev = c.inputs[0]
    for it in c.items:
        if it.inputs != [prev] or it.call or it.type in ("Parameter", "Buffer"):
            return None
        prev = it.name
    if c.outputs != [prev]:
        return None
    names = [it.name for it in c.items]
    if isinstance(c.module, (nn.Sequential, nn.ModuleList)) and names == [
        str(i) for i in range(len(names))
    ]:
        return {"type": "Sequential", "layers": [item_node(it) for it in c.items]}
    return {"type": "Sequential", "layers": {it.name: item_node(it) for it in c.items}}


def _graph(c: Converted) -> Data:
    rename: dict[str, str] = {}
    taken = {it.name for it in c.items}
    if len(c.inputs) == 1 and c.inputs[0] != "input" and "input" not in taken:
        rename[c.inputs[0]] = "input"
    inputs = [rename.get(i, i) for i in c.inputs]
    nodes: Data = {}
    prev = inputs[0] if len(inputs) == 1 else None  # several: each node names its inputs
    for it in _registration_order(c):
        d = item_node(it)
        mine = [rename.get(i, i) for i in it.inputs]
        if mine and mine != [prev]:
            d["input"] = mine[0] if len(mine) == 1 else mine
        elif not mine and it.type not in ("Parameter", "Buffer"):
            d["input"] = []
        if it.call:
            d["call"] = {
                k: rename.get(v, v) if isinstance(v, str) else v for k, v in it.call.items()
            }
        nodes[it.name] = d
        prev = it.name
    out: Data = {"type": "Graph"}
    if inputs != ["input"]:
        out["inputs"] = inputs
    out["nodes"] = nodes
    outputs = [rename.get(o, o) for o in c.outputs]
    if outputs != [prev] or len(outputs) > 1 or c.train_outputs:
        out["output"] = outputs[0] if len(outputs) == 1 and not _tuple(c) else outputs
    if c.train_outputs:
        train = [rename.get(o, o) for o in c.train_outputs]
        out["train_output"] = train[0] if len(train) == 1 else train
    return out


def _registration_order(c: Converted) -> list[Item]:
    """The items in an order their inputs allow that keeps the module's registration order
    of its submodules (state_dict keys follow it): parameter-free nodes as soon as they can
    run, then the submodule registered first among those ready."""
    index = {name: i for i, (name, _) in enumerate(c.module.named_children())}
    names = {it.name for it in c.items}
    reads = {
        it.name: {x for x in [*it.inputs, *(v for v in it.call.values() if isinstance(v, str))]}
        for it in c.items
    }
    needs = {it.name: {x for x in reads[it.name] if x in names} for it in c.items}
    for i, it in enumerate(c.items):  # what reads a value before a node writes into it
        if it.mutates:
            needs[it.name] |= {e.name for e in c.items[:i] if reads[e.name] & set(it.inputs)}
    own = [n for n, _ in c.module.named_parameters(recurse=False)]
    own += [n for n, _ in c.module.named_buffers(recurse=False)]
    held = sorted(
        (it for it in c.items if it.type in ("Parameter", "Buffer")),
        key=lambda it: own.index(it.name) if it.name in own else len(own),
    )
    done: set[str] = {it.name for it in held}
    out: list[Item] = list(held)
    pending = [it for it in c.items if it.name not in done]
    while pending:
        ready = [it for it in pending if needs[it.name] <= done]
        stateless = [it for it in ready if it.child is None or not _state(c.module, it.child)]
        pick = (
            stateless[0]
            if stateless
            else min(ready, key=lambda it: index.get(str(it.child).split(".")[0], len(index)))
        )
        out.append(pick)
        done.add(pick.name)
        pending.remove(pick)
    return out


def _state(m: nn.Module, child: str) -> bool:
    return has_state(m.get_submodule(child))


def _tuple(c: Converted) -> bool:
    return len(c.outputs) > 1


def model_node(tree: Converted | Item) -> Data:
    """The spec's ``model``: a module that is one registered layer is that layer."""
    return item_node(tree) if isinstance(tree, Item) else container(tree)


# -- blocks -----------------------------------------------------------------------------
def _walk(node: Any, depth: int = 0) -> Iterator[tuple[Any, Any, Data, int]]:
    """(holder, key, node, depth) for every node dict below ``node``."""
    if not isinstance(node, dict):
        return
    for key in ("layers", "nodes"):
        kids = node.get(key)
        items = kids.items() if isinstance(kids, dict) else enumerate(kids or [])
        for k, child in list(items):
            if isinstance(child, dict):
                yield kids, k, child, depth + 1
                yield from _walk(child, depth + 1)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every argument value of a node tree, structure keys excluded."""
    if isinstance(node, dict):
        if _swappable(node):
            yield (*path, "type"), node["type"]
        for k, v in _arguments(node):
            if isinstance(k, str) and (
                k.startswith(("#", "!")) or k in _STRUCTURE or k in PLACEMENT
            ):
                if k in ("layers", "nodes"):
                    yield from _leaves(v, (*path, k))
                continue
            if _scalar(v):
                yield (*path, k), v
            else:
                yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))


def _swappable(node: Data) -> bool:
    """A parameter-free torch layer (``ReLU``, ``Hardswish``): a block may take its type as a
    parameter (``type: $activation``), so that bodies that differ only there are one block."""
    t = node.get("type")
    if not isinstance(t, str) or t not in layers():
        return False
    typedef = layers()[t]
    return typedef.kind == "layer" and typedef.rule is not None and typedef.rule.stateless


def _arguments(node: Data) -> Iterator[tuple[str, Any]]:
    """A node's arguments, with the registered defaults of those it leaves out (so that
    ``stride: 2`` and a left-out stride are one structure, the stride a parameter)."""
    t = node.get("type")
    typedef = layers().get(t) if isinstance(t, str) and not _swappable(node) else None
    seen = set()
    for k, v in node.items():
        seen.add(k)
        yield k, v
    if typedef is not None:
        for p in typedef.params:
            if (
                p.name not in seen
                and not p.required
                and p.name not in typedef.infers
                and _scalar(p.default)
            ):
                yield p.name, p.default


def _scalar(v: Any) -> bool:
    if isinstance(v, list):
        return all(_scalar(x) and not isinstance(x, list) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _signature(node: Any) -> Any:
    """The structure of a node tree, with argument values masked."""
    if isinstance(node, dict):
        out = []
        swappable = _swappable(node)
        for k, v in sorted(_arguments(node), key=lambda kv: str(kv[0])):
            if isinstance(k, str) and k.startswith(("#", "!")):
                continue
            if k == "type" and swappable:
                out.append((k, "*layer"))
            elif k in ("input", "call"):
                out.append((k, _freeze(v)))
            elif k in _STRUCTURE or k in PLACEMENT or not _scalar(v):
                out.append((k, _signature(v)))
            else:
                out.append((k, "*"))
        return tuple(out)
    if isinstance(node, list):
        return tuple(_signature(v) for v in node)
    return node


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _key(v: Any) -> Any:
    return tuple(_key(x) for x in v) if isinstance(v, list) else (type(v).__name__, v)


def make_blocks(model: Data) -> Data:
    """Replaces the repeated instances of each class by uses of a block; returns the blocks.

    One group at a time (a class's instances of one structure), the deepest first: its
    uses are then arguments of the groups around it, whose structures are compared next.
    """
    blocks: Data = {}
    taken = set(layers()) | set(CONTAINERS)
    while True:
        groups: dict[tuple[str, Any], list[tuple[Any, Any, Data, int]]] = {}
        for holder, key, node, depth in _walk({"layers": [model]}):
            cls = node.get("!cls")
            if cls:
                groups.setdefault((cls, _signature(_body(node))), []).append(
                    (holder, key, node, depth)
                )
        if not groups:
            break
        group = max(groups.values(), key=lambda g: max(d for *_, d in g))
        if not _worth(group):
            for _, _, node, _ in group:
                node.pop("!cls", None)
            continue
        name = _block_name(group[0][2], group[0][1], taken)
        taken.add(name)
        blocks[name] = _block(name, group)
    return blocks


def _worth(group: list[tuple[Any, Any, Data, int]]) -> bool:
    """Whether a block for these instances makes the spec shorter: each instance but one
    saves its body's lines, the block costs about three."""
    if len(group) < 2:
        return False
    size = sum(1 for _ in _nodes(_body(group[0][2])))
    return (len(group) - 1) * size > 3 or (len(group) > 2 and group[0][2].get("!cls") != GENERIC)


def _nodes(node: Any) -> Iterator[Data]:
    if isinstance(node, dict):
        if "type" in node:
            yield node
        for v in node.values():
            yield from _nodes(v)
    elif isinstance(node, list):
        for v in node:
            yield from _nodes(v)


def _body(node: Data) -> Data:
    return {k: v for k, v in node.items() if k not in PLACEMENT}


def _block_name(node: Data, key: Any, taken: set[str]) -> str:
    cls = str(node["!cls"])
    if cls == GENERIC:  # named after its first use: downsample -> Downsample
        words = re.findall(r"[A-Za-z][a-z0-9]*|[0-9]+", str(key)) if isinstance(key, str) else []
        base = "".join(w[:1].upper() + w[1:] for w in words) or "Block"
    else:
        base = re.sub(r"[^A-Za-z0-9_]", "_", cls.rsplit(".", 1)[-1]) or "Block"
    if base[0].isdigit():
        base = "B" + base
    name, i = base, 2
    while name in taken:
        name = f"{base}{i}"
        i += 1
    return name


def _block(name: str, group: list[tuple[Any, Any, Data, int]]) -> Data:
    bodies = [_body(node) for _, _, node, _ in group]
    columns: dict[tuple[Any, ...], list[Any]] = {}
    for body in bodies:
        for path, v in _leaves(body):
            columns.setdefault(path, []).append(v)
    varying = {p: vs for p, vs in columns.items() if len({_key(v) for v in vs}) > 1}
    # positions with the same values in every instance share one parameter
    by_values: dict[Any, list[tuple[Any, ...]]] = {}
    for p, vs in varying.items():
        by_values.setdefault(tuple(_key(v) for v in vs), []).append(p)
    attrs = [node.get("!attrs", {}) for _, _, node, _ in group]
    params: Data = {}
    where: dict[tuple[Any, ...], str] = {}
    for paths in by_values.values():
        values = varying[paths[0]]
        pname = _param_name(paths, values, attrs, params)
        params[pname] = _param_spec(values)
        for p in paths:
            where[p] = pname
    body = copy.deepcopy(bodies[0])
    for p, pname in where.items():
        _set(body, p, f"${pname}")
    clean(body)
    for (holder, key, node, _), i in zip(group, range(len(group)), strict=True):
        use: Data = {"type": name}
        for pname, spec in params.items():
            value = varying[next(p for p, n in where.items() if n == pname)][i]
            if not (
                isinstance(spec, dict)
                and "default" in spec
                and _key(spec["default"]) == _key(value)
            ):
                use[pname] = value
        for k in PLACEMENT:
            if k in node:
                use[k] = node[k]
        holder[key] = use
    return {
        "params": {k: (v["default"] if isinstance(v, dict) else v) for k, v in params.items()},
        "body": body,
    }


def _param_name(
    paths: list[tuple[Any, ...]], values: list[Any], attrs: list[Data], params: Data
) -> str:
    for name in attrs[0]:
        same = all(
            name in a and _key(a[name]) == _key(v) for a, v in zip(attrs, values, strict=True)
        )
        if same and name not in params and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return name
    keys = Counter(_arg_name(p) for p in paths)
    base = keys.most_common(1)[0][0] if keys else "value"
    name, i = base, 2
    while name in params:
        name = f"{base}_{i}"
        i += 1
    return name


def _arg_name(path: tuple[Any, ...]) -> str:
    """A parameter's name from where it is used: the argument, or for a layer's type the
    node's name (``activation``), ``layer`` in a list."""
    if path[-1] != "type":
        return str(path[-1])
    if (
        len(path) > 1
        and isinstance(path[-2], str)
        and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", path[-2])
    ):
        return path[-2]
    return "layer"


_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list"}


def _param_spec(values: list[Any]) -> Any:
    """A parameter's declaration: the most common value as its default, where one repeats."""
    counts = Counter(_key(v) for v in values)
    top, n = counts.most_common(1)[0]
    kinds = {type(v) for v in values}
    default = next(v for v in values if _key(v) == top)
    reserved = isinstance(default, str) and default in (
        "int",
        "float",
        "bool",
        "str",
        "list",
        "any",
    )
    if (n > 1 or default is None) and not reserved:
        return {"default": default}
    if len(kinds) == 1 and next(iter(kinds)) in _TYPES:
        return _TYPES[next(iter(kinds))]
    return "any"


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def clean(node: Any) -> Any:
    """Drops the importer's private keys (``#``, ``!...``) everywhere below ``node``."""
    if isinstance(node, dict):
        for k in [k for k in node if isinstance(k, str) and k.startswith(("#", "!"))]:
            del node[k]
        for v in node.values():
            clean(v)
    elif isinstance(node, list):
        for v in node:
            clean(v)
    return node


# -- repeat and tables --------------------------------------------------------------------
def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _plain(v)
            for k, v in node.items()
            if not (isinstance(k, str) and k.startswith(("#", "!")))
        }
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _flat(node: Any) -> bool:
    """A leaf or block use: no nested containers."""
    return (
        isinstance(node, dict)
        and "layers" not in node
        and "nodes" not in node
        and "repeat" not in node
        and "for" not in node
    )


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def shorten(node: Any, blocks: Data) -> None:
    """``repeat`` for identical neighbours in a Sequential, ``for`` tables for neighbours
    of one type that differ in their arguments (three or more). A block use is compared
    with its parameters' defaults filled in (``Unit`` and ``{type: Unit, dilation: 2}``
    are rows of one table)."""
    if isinstance(node, dict):
        if node.get("type") == "Sequential":
            layers_ = node.get("layers")
            if isinstance(layers_, list):
                filled = [_filled(e, blocks) for e in layers_]
                node["layers"] = [_unfilled(e, blocks) for e in _runs_list(filled)]
            elif isinstance(layers_, dict):
                filled_map = {k: _filled(e, blocks) for k, e in layers_.items()}
                node["layers"] = {k: _unfilled(e, blocks) for k, e in _runs_map(filled_map).items()}
        for v in list(node.values()):
            shorten(v, blocks)
    elif isinstance(node, list):
        for v in node:
            shorten(v, blocks)


def _defaults(node: Any, blocks: Data) -> Data:
    t = node.get("type") if isinstance(node, dict) else None
    if not isinstance(t, str) or t not in blocks:
        return {}
    return {
        k: v
        for k, v in blocks[t]["params"].items()
        if not (isinstance(v, str) and v in PARAM_TYPES)
    }


def _filled(node: Any, blocks: Data) -> Any:
    defaults = _defaults(node, blocks)
    if not defaults:
        return node
    return {
        **{"type": node["type"]},
        **{k: v for k, v in defaults.items() if k not in node},
        **node,
    }


def _unfilled(node: Any, blocks: Data) -> Any:
    defaults = _defaults(node, blocks)
    if not defaults:
        return node
    return {k: v for k, v in node.items() if not (k in defaults and _key(defaults[k]) == _key(v))}


def _same_kind(a: Any, b: Any) -> bool:
    if not (_flat(a) and _flat(b)) or a.get("type") != b.get("type"):
        return False
    ka = {k for k in a if not k.startswith(("#", "!"))}
    kb = {k for k in b if not k.startswith(("#", "!"))}
    if ka != kb:
        return False
    return all((_scalar(a[k]) and _scalar(b[k])) or _plain(a[k]) == _plain(b[k]) for k in ka)


def _merge(run: list[Data]) -> list[Data]:
    """A run of one kind: identical neighbours as ``repeat``, the rest as tables of three or
    more rows (fewer stay as they are)."""
    out: list[Data] = []
    pending: list[Data] = []
    i = 0
    while i < len(run):
        j = i + 1
        while j < len(run) and _plain(run[j]) == _plain(run[i]):
            j += 1
        if j - i >= 2:
            out.extend(_table(pending))
            pending = []
            merged = dict(run[i])
            merged["repeat"] = j - i
            if "#" in run[j - 1]:
                merged["#"] = run[j - 1]["#"]
            out.append(merged)
        else:
            pending.append(run[i])
        i = j
    out.extend(_table(pending))
    return out


def _table(run: list[Data]) -> list[Data]:
    if len(run) < 3:
        return run
    first = _plain(run[0])
    keys = [k for k in first if k != "type"]
    differ = [k for k in keys if any(_plain(r.get(k)) != first.get(k) for r in run)]
    merged = {k: v for k, v in run[0].items() if k not in differ and not k.startswith(("#", "!"))}
    merged["for"] = [{k: r[k] for k in differ} for r in run]
    if "#" in run[-1]:
        merged["#"] = run[-1]["#"]
    return [merged]


def _runs(entries: list[Data]) -> list[list[Data]]:
    runs: list[list[Data]] = []
    for e in entries:
        if runs and _same_kind(runs[-1][-1], e):
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def _runs_list(entries: list[Any]) -> list[Any]:
    out: list[Any] = []
    for run in _runs(entries):
        out.extend(_merge(run))
    return out


def _runs_map(entries: Data) -> Data:
    out: Data = {}
    names = list(entries)
    i = 0
    while i < len(names):
        m = _NUMBERED.match(names[i])
        j = i + 1
        if m and _flat(entries[names[i]]):
            prefix, start = m.group(1), int(m.group(2))
            while j < len(names):
                mj = _NUMBERED.match(names[j])
                if not (
                    mj
                    and mj.group(1) == prefix
                    and int(mj.group(2)) == start + (j - i)
                    and str(int(mj.group(2))) == mj.group(2)
                    and _same_kind(entries[names[i]], entries[names[j]])
                ):
                    break
                j += 1
        run = [entries[n] for n in names[i:j]]
        merged = _merge(run) if j - i > 1 and m and prefix and not prefix[-1].isdigit() else run
        k = i
        for piece in merged:
            count = piece.get("repeat") or len(piece.get("for") or []) or 1
            if count > 1:  # names prefix{n}, prefix{n + 1}, ...: a {...} name
                number = int(_NUMBERED.match(names[k]).group(2))  # type: ignore[union-attr]
                offset = f" + {number}" if number else ""
                out[f"{prefix}{{$index{offset}}}"] = piece
            else:
                out[names[k]] = piece
            k += count
        i = j
    return out
