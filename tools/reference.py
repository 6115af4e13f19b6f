"""Generate ``docs/reference.md``: every name a spec may use, with its arguments.

Spec authors look names up (which loss takes ``label_smoothing``, what ``StepLR`` needs, what
``Synthetic`` reads); the page that answers is generated from the registry that validation and
the JSON Schema read, so it lists exactly what ``specnet validate`` accepts, with the same
ranges and defaults, and keeps no list of its own. ``tests/test_reference.py`` fails when the
committed page is stale.

Run ``python -m tools.reference`` to rewrite the page; ``python -m tools.reference --check``
exits 1 when it is stale. Like the front end, this never imports torch: the page can be
regenerated (and checked) with the light ``specnet-core`` install.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet._front import rules as rule_modules
from specnet._front.registry import (
    CONTAINERS,
    Param,
    TypeDef,
    catalog,
    layers,
    losses,
    optimizers,
    schedulers,
)
from specnet._front.rules import FAMILIES
from specnet._front.rules.base import Keyword, RuleSet
from specnet._front.schema import _sentence
from specnet._front.spec import DTYPES
from specnet._front.trainspec import (
    _SETTINGS,
    _WORDS,
    METRICS,
    Component,
    TrainSpec,
    datasets,
    transforms,
)
from specnet._front.types import describe

__all__ = ["COMMAND", "REFERENCE_PATH", "main", "render"]

REFERENCE_PATH = Path(__file__).parents[1] / "docs" / "reference.md"
COMMAND = "python -m tools.reference"

BUILT_IN = ("layer", "op")
"""The kinds of layer the page lists: torch.nn's and specnet's ops. Layers registered from
Python (kind ``custom``) belong to a program, not to specnet, and are left out even when a
process that registered some renders the page."""


# -- markdown ---------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MARKUP = [
    (re.compile(r"\\"), r"\\\\"),
    (re.compile(r"([*~])"), r"\\\1"),
    (re.compile(r"(?<!\w)_|_(?!\w)"), r"\\_"),
    (re.compile(r"<(?=[A-Za-z/!?])"), "&lt;"),
]
"""What markdown would read as markup in plain text: torch's docstrings say ``target*input``
and ``gamma**(cycle iterations)``, which GitHub would turn into emphasis."""


def _plain(text: str) -> str:
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


def _md(text: str) -> str:
    """``text`` (a doc, on one line) as markdown that shows it as written: markup escaped
    outside its code spans, and ``|`` everywhere, so that a table cell stays one cell."""
    text = " ".join(text.split())
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out += [_plain(text[pos : m.start()]), m.group(0)]
        pos = m.end()
    out.append(_plain(text[pos:]))
    return "".join(out).replace("|", r"\|")


def _code(text: str) -> str:
    """``text`` as a code span (in a table cell: ``|`` escaped, which GitHub also reads in
    code spans)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", r"\|")


def _value(value: Any) -> str:
    """A default as a spec file writes it: JSON, which YAML reads too (as the schema says it)."""
    if isinstance(value, Component):
        value = {"type": value.type, **value.args} if value.args else value.type
    if isinstance(value, tuple):
        value = list(value)
    return _code(json.dumps(value, ensure_ascii=False))


def _slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _link(title: str, anchor: str) -> str:
    return f"[{title}](#{anchor})"


@dataclass
class _Page:
    """The page as it is written: its lines, its headings' anchors and its contents."""

    lines: list[str] = field(default_factory=list)
    toc: list[str] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)
    """The anchor of each section (level 2 heading) by its title."""
    _seen: Counter[str] = field(default_factory=Counter)

    def heading(self, level: int, title: str) -> str:
        """Write a heading; returns its anchor (GitHub numbers repeated ones: ``name-1``)."""
        base = _slug(title)
        anchor = f"{base}-{self._seen[base]}" if self._seen[base] else base
        self._seen[base] += 1
        if level == 2:
            self.sections.setdefault(title, anchor)
        self.lines += [f"{'#' * level} {title}", ""]
        return anchor

    def paragraph(self, text: str) -> None:
        self.lines += [text, ""]

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + " --- |" * len(header))
        self.lines += ["| " + " | ".join(row) + " |" for row in rows]
        self.lines.append("")


# -- one type ---------------------------------------------------------------------------


_FROM_TORCH = ("layer", "loss", "optimizer", "scheduler")
"""The kinds whose docs come from torch's docstrings (the catalog)."""


def _doc(t: TypeDef, doc: str) -> str:
    """An argument's doc as a sentence. torch's often end with their default ("Default:
    ``True``"), which the table says once, in a spec's spelling: those are cut, as the JSON
    Schema cuts them. specnet's own docs are kept whole: their "Default: the last node" says
    what a ``null`` means."""
    return _sentence(doc) if t.kind in _FROM_TORCH else _period(doc)


def _period(doc: str) -> str:
    doc = doc.strip()
    return doc if doc.endswith((".", "!", "?")) else doc + "."


def _default(t: TypeDef, p: Param) -> str:
    if p.name in t.infers:
        return "inferred from the input"
    if p.required:
        return "required"
    return _value(p.default)


Words = Callable[[Param], str]
"""The *type* cell of an argument."""


def _words(p: Param) -> str:
    return _md(describe(p.type, p.range))


def _arguments(page: _Page, t: TypeDef, words: Words) -> None:
    if not t.params:
        page.paragraph("No arguments.")
        return
    page.table(
        ("argument", "type", "default", "description"),
        ((_code(p.name), words(p), _default(t, p), _md(_doc(t, p.doc))) for p in t.params),
    )


def _keyword(name: str, kw: Keyword) -> tuple[str, str, str, str]:
    value = "a graph node's name (a tensor), or null" if kw.tensor else describe(kw.type)
    return (_code(name), _md(value), _value(kw.default), _md(_period(kw.doc)))


def _call(page: _Page, t: TypeDef) -> None:
    """The keyword arguments of the layer's ``forward`` that a graph node's ``call:`` gives."""
    call = t.rule.call if t.rule is not None else None
    if call is None:
        return
    page.paragraph("Keyword arguments of its `forward`, given by a Graph node's `call:`:")
    page.table(
        ("keyword", "value", "default", "description"),
        (_keyword(name, kw) for name, kw in call.keywords.items()),
    )


def _type(
    page: _Page, t: TypeDef, level: int, facts: Sequence[str] = (), words: Words = _words
) -> str:
    """A type's heading, its doc, ``facts`` (sentences), its arguments; returns its link."""
    anchor = page.heading(level, t.name)
    page.paragraph(_md(_doc(t, t.doc or t.name)))
    if facts:
        page.paragraph(" ".join(facts))
    _arguments(page, t, words)
    _call(page, t)
    return _link(t.name, anchor)


def _section(
    page: _Page,
    title: str,
    intro: str,
    entries: Iterable[TypeDef],
    facts: Callable[[TypeDef], Sequence[str]] = lambda t: (),
    words: Words = _words,
) -> None:
    """A section of types, one heading each (sorted by name)."""
    anchor = page.heading(2, title)
    page.paragraph(intro)
    ordered = sorted(entries, key=lambda t: t.name)
    links = [_type(page, t, 3, facts(t), words) for t in ordered]
    page.toc.append(f"- {_link(title, anchor)}: {', '.join(links)}")


# -- the sections -----------------------------------------------------------------------


def _containers(page: _Page) -> None:
    _section(
        page,
        "Containers",
        "A node that holds other nodes (`model:` is often one). They compile to the torch "
        "containers their docs name, and state-dict keys follow the names in the spec.",
        CONTAINERS.values(),
    )


_COUNTS = ("no", "one", "two", "three", "four")


def _count(n: int) -> str:
    return _COUNTS[n] if n < len(_COUNTS) else str(n)


def _inputs(t: TypeDef) -> str:
    """How many inputs a layer takes, as a sentence (several: a Graph node's ``input:`` list)."""
    low, high = t.rule.inputs if t.rule is not None else (1, 1)
    if low == high:
        text = f"{_count(low)} input{'' if low == 1 else 's'}"
    elif high is None:
        text = f"{_count(low)} or more inputs"
    else:
        text = f"{_count(low)} to {_count(high)} inputs"
    return f"Takes {text}."


def _layer_facts(t: TypeDef) -> list[str]:
    source = f"`torch.nn.{t.name}`." if t.kind == "layer" else "A specnet op."
    return [source, _inputs(t)]


def _family_title(module: types.ModuleType) -> tuple[str, str]:
    """A family's heading and summary, from the first sentence of its module's docstring
    (``Pooling: max, average, ...``: the heading is what comes before the colon)."""
    first = " ".join((module.__doc__ or module.__name__).split("\n\n")[0].split())
    first = first.replace("``", "`")
    sentence = re.split(r"(?<=\.)\s", first)[0]
    title = sentence.split(":")[0].rstrip(".")
    return title, sentence


def _families() -> list[tuple[types.ModuleType, RuleSet]]:
    """The families of shape rules with their modules, in :data:`FAMILIES`' order."""
    modules = {
        id(m.rules): m
        for m in vars(rule_modules).values()
        if isinstance(m, types.ModuleType) and isinstance(getattr(m, "rules", None), RuleSet)
    }
    return [(modules[id(family)], family) for family in FAMILIES]


def _layers(page: _Page) -> None:
    reg = layers()
    anchor = page.heading(2, "Layers")
    page.paragraph(
        "Every type a node may name: torch.nn's layers by their class names, with their "
        "constructor arguments, and specnet's ops (the parameter-free operations a "
        "hand-written `forward` does inline). Grouped by the families of shape rules "
        "(`specnet/_front/rules/`). Dimensions count the batch as 0, as torch does. Layers "
        "registered from Python with `specnet.register` are usable too and not listed here."
    )
    page.toc.append(f"- {_link('Layers', anchor)}")
    placed: set[str] = set()
    for module, family in _families():
        names = sorted(n for n in family.rules if n in reg and reg[n].kind in BUILT_IN)
        title, summary = _family_title(module)
        group = page.heading(3, title)
        if summary != f"{title}.":
            page.paragraph(_md(summary))
        links = [_type(page, reg[n], 4, _layer_facts(reg[n])) for n in names]
        page.toc.append(f"  - {_link(title, group)}: {', '.join(links)}")
        placed.update(names)
    missing = sorted(n for n, t in reg.items() if t.kind in BUILT_IN and n not in placed)
    if missing:
        raise ValueError(f"layer types in no family of shape rules: {missing}")


def _losses(page: _Page) -> None:
    _section(
        page,
        "Losses",
        "`train.loss`: a torch.nn loss by its class name, bare (`loss: MSELoss`) or as a "
        "mapping with its arguments (`loss: {type: CrossEntropyLoss, label_smoothing: 0.1}`). "
        "It is called as `loss(output, targets)`; list values (a class `weight`, a "
        "`pos_weight`) become float32 tensors.",
        losses().values(),
        lambda t: [f"`torch.nn.{t.name}`."],
    )


def _optimizers(page: _Page) -> None:
    _section(
        page,
        "Optimizers",
        "`train.optimizer`: a torch.optim optimizer by its class name, bare or as a mapping "
        "with its arguments (`optimizer: {type: SGD, lr: 0.01, momentum: 0.9}`), built with "
        "the model's parameters.",
        optimizers().values(),
        lambda t: [f"`torch.optim.{t.name}`."],
    )


_STEPPING = {
    "epoch": "It steps once an epoch, after validation.",
    "batch": "It steps after every optimizer step.",
    "metric": "It steps once an epoch with the validation loss (the training loss when "
    "there is no validation data).",
}
"""When the trainer steps a schedule, by its registry entry's ``stepping``."""


def _schedules(page: _Page) -> None:
    _section(
        page,
        "Schedules",
        "`train.schedule`: a torch.optim.lr_scheduler class by its name, bare or as a "
        "mapping with its arguments (`schedule: {type: StepLR, step_size: 10}`), built with "
        "the optimizer. Default: none (a constant learning rate).",
        schedulers().values(),
        lambda t: [
            f"`torch.optim.lr_scheduler.{t.name}`.",
            _STEPPING[t.stepping or "epoch"],
        ],
    )


TRANSFORMS = "Transforms"
"""The title of the transforms' section, which the data sets' section (before it) links to."""


def _dataset_words(p: Param) -> str:
    """The registry types a data set's ``transforms`` as a list of any values; validation
    and the schema check each against :func:`transforms`, and so the page links to them."""
    if p.name == "transforms":
        return f"list of {_link('transforms', _slug(TRANSFORMS))}"
    return _words(p)


def _datasets(page: _Page) -> None:
    _section(
        page,
        "Data sets",
        "`train.data`: what `specnet train` trains on, bare (`data: Digits`) or as a mapping "
        "with its arguments. Each gives `(input, target)` samples of one input, for a train "
        "split, a validation split where it has one and a test split; the split evaluated "
        "each epoch is the validation split, else the test split (`monitor:` names its "
        "columns). The first sample must match the spec's `input` (shape and dtype), or "
        "training does not start.",
        datasets().values(),
        words=_dataset_words,
    )


def _transforms(page: _Page) -> None:
    _section(
        page,
        TRANSFORMS,
        "The `transforms:` of a torchvision data set (MNIST, CIFAR10, ...): a list of "
        "torchvision transforms by their class names, bare or as mappings with their "
        "arguments, applied to each image in order (`[ToTensor, {type: Normalize, mean: "
        "[0.5], std: [0.5]}]`).",
        transforms().values(),
        lambda t: [f"`torchvision.transforms.{t.name}`."],
    )


def _metrics(page: _Page) -> None:
    anchor = page.heading(2, "Metrics")
    page.paragraph(
        "`train.metrics`: a list of these names, computed each epoch on the split evaluated "
        "then (columns `val_<name>` of `metrics.csv` beside `val_loss`, or `test_<name>` for "
        "a data set without a validation split) and on the test split at the end."
    )
    page.table(
        ("metric", "what it is", "what it needs"),
        (
            (_code(m.name), _md(m.doc), _md(m.needs.text))
            for m in sorted(METRICS.values(), key=lambda m: m.name)
        ),
    )
    page.toc.append(f"- {_link('Metrics', anchor)}")


def _dtype_kind(name: str) -> str:
    if name == "bool":
        return "boolean"
    return "floating point" if "float" in name else "integer"


def _dtypes(page: _Page) -> None:
    anchor = page.heading(2, "Dtypes")
    users = sorted(n for n, t in layers().items() if t.kind in BUILT_IN and "dtype" in t.by_name)
    page.paragraph(
        "The names a `dtype` takes: an input's (`input: {shape: [16], dtype: int64}`), and the "
        f"`dtype` argument of {', '.join(f'`{n}`' for n in users)} (some take fewer: see "
        "each). Each is torch's canonical name without `torch.`."
    )
    page.table(
        ("dtype", "torch", "kind"),
        ((_code(d), _code(f"torch.{d}"), _dtype_kind(d)) for d in DTYPES),
    )
    page.toc.append(f"- {_link('Dtypes', anchor)}")


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


_COMPONENT_SECTIONS = {
    "data": "Data sets",
    "loss": "Losses",
    "optimizer": "Optimizers",
    "schedule": "Schedules",
}
"""The section that lists the types each component key of ``train:`` may name."""


def _setting_type(page: _Page, name: str, annotation: Any) -> str:
    """A ``train:`` key's type, in the words validation's messages use for it."""
    if name in _WORDS:
        return _md(_WORDS[name])
    setting = _SETTINGS.get(name)
    if setting is not None:
        return _md(setting.words())
    title = _COMPONENT_SECTIONS[name]
    words = f"a name from {_link(title, page.sections[title])}, or a mapping with `type` and "
    return words + ("its arguments, or null" if _optional(annotation) else "its arguments")


def _train(page: _Page) -> None:
    anchor = page.heading(2, "The `train:` section")
    page.paragraph(
        "The keys of `train:` (the fields of `specnet.TrainSpec`; `specnet.Trainer` takes "
        "the same ones, but `data`, as keyword arguments). Every key may be left out."
    )
    page.table(
        ("key", "type", "default", "description"),
        (
            (
                _code(name),
                _setting_type(page, name, f.annotation),
                _value(f.default),
                _md(f.description or ""),
            )
            for name, f in TrainSpec.model_fields.items()
        ),
    )
    page.toc.append(f"- {_link('The `train:` section', anchor)}")


# -- the page ---------------------------------------------------------------------------


def _header(page: _Page) -> None:
    page.heading(1, "specnet reference")
    page.paragraph(f"<!-- Generated by `{COMMAND}`: do not edit by hand. -->")
    page.paragraph(
        "Every name a spec may use, with its arguments: the types of `model:` (containers, "
        "torch.nn layers, specnet's ops) and of `train:` (losses, optimizers, schedules, "
        "data sets, transforms, metrics), the dtype names and the keys of `train:`. This "
        f"page is generated by `{COMMAND}` from the registry that validation and the JSON "
        "Schema read (torch's classes as the catalog describes them for torch "
        f"{catalog()['torch']}): the names, arguments, ranges and defaults that `specnet "
        "validate` checks. "
        "[spec-format.md](spec-format.md) explains the format."
    )
    page.paragraph(
        "In the tables, *type* is what an argument takes, with the numbers torch accepts "
        "(`int >= 1`, `float in [0, 1]`, for a list: each item's). *default* is the value "
        "used when the spec leaves the argument out, written as JSON (which YAML reads "
        "too); *required* when there is none; *inferred from the input* when shape "
        "inference fills it in from the incoming tensor (given anyway, it is checked "
        "against it). A type none of whose arguments is *required* may be written as its "
        "bare name: `ReLU`, `loss: MSELoss`, `data: Digits`."
    )


SECTIONS: tuple[Callable[[_Page], None], ...] = (
    _containers,
    _layers,
    _losses,
    _optimizers,
    _schedules,
    _datasets,
    _transforms,
    _metrics,
    _dtypes,
    _train,
)
"""The page's sections, in order (the data sets', transforms' and settings' last: the
``train:`` table links to the sections before it)."""


def render() -> str:
    """The page, as committed."""
    page = _Page()
    _header(page)
    page.heading(2, "Contents")
    head, page.lines = page.lines, []
    for write in SECTIONS:
        write(page)
    if page.sections[TRANSFORMS] != _slug(TRANSFORMS):
        raise ValueError(f"the data sets link to #{_slug(TRANSFORMS)}, another heading's anchor")
    return "\n".join([*head, *page.toc, "", *page.lines]).rstrip("\n") + "\n"


def _shown(path: Path) -> str:
    """``path`` as a message names it: relative to the checkout when inside it."""
    root = REFERENCE_PATH.parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def main(argv: Sequence[str] | None = None, path: Path = REFERENCE_PATH) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=f"Write {_shown(path)}.")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the page is stale, writing nothing"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = path.read_text("utf-8") if path.exists() else None
        if current != text:
            print(f"{_shown(path)} is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
