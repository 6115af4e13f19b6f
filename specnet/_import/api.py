"""From an ``nn.Module`` to a spec: :func:`from_module`, and the check of a round trip."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specnet._build.compiler import build_module
from specnet._front.errors import UsageError
from specnet._front.schema import schema_path
from specnet._front.source import read_document
from specnet._front.spec import DTYPES, Spec, TensorSpec, unknown_dtype
from specnet._front.validate import validate_document

from .problems import ModelError, Problem, SpecImportError, qualname
from .structure import make_blocks, model_node, shorten
from .trace import convert
from .writer import dump

__all__ = [
    "Imported",
    "Match",
    "from_module",
    "import_module",
    "match",
    "register_custom",
    "schema_reference",
]

MAX_EXAMPLE = 2**28
"""The most values an example batch may hold (1 GiB of float32): a larger input is a
mistake or a model to import at a smaller size."""

BATCH = 2
"""The example's batch size (the comparison uses another, so a size that was fixed to the
example's batch by mistake shows)."""


@dataclass
class Imported:
    """An imported spec: its text, and the custom classes it names (``allow_custom``)."""

    text: str
    custom: dict[str, type] = field(default_factory=dict)


Input = Sequence[int] | torch.Tensor | TensorSpec
Inputs = Input | Mapping[str, Input]
"""One sample's shape, an example batch or a :class:`TensorSpec`; or a mapping of the
module's ``forward`` arguments to those."""


def _tensor_spec(value: Input, dtype: str) -> TensorSpec:
    if isinstance(value, TensorSpec):
        return value
    if isinstance(value, torch.Tensor):
        return TensorSpec(
            shape=tuple(value.shape[1:]), dtype=str(value.dtype).removeprefix("torch.")
        )
    if any(isinstance(d, bool) or not isinstance(d, int) for d in value):
        raise UsageError(f"input shape {list(value)}: sizes are integers")
    return TensorSpec(shape=tuple(value), dtype=dtype)


def _make_example(value: Input, spec: TensorSpec, batch: int, seed: int) -> torch.Tensor:
    """An example batch of ``batch`` samples; from an example tensor, its samples repeated
    to that size (its values stay valid, token ids say)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.shape[0] < 1:
            raise UsageError("an example input needs a batch dimension of at least one sample")
        reps = -(-batch // value.shape[0])
        return value.repeat(reps, *([1] * (value.dim() - 1)))[:batch]
    shape = list(spec.shape)
    if any(d < 1 for d in shape):
        raise UsageError(f"input shape {shape}: each size must be at least 1")
    if spec.dtype not in DTYPES:
        raise UsageError(f"--dtype: {unknown_dtype(spec.dtype)}")
    full = [batch, *shape] if spec.batch else shape
    if math.prod(full) > MAX_EXAMPLE:
        raise UsageError(
            f"input shape {shape}: an example batch of {math.prod(full):,} values is more than "
            f"{MAX_EXAMPLE:,}; import at a smaller size"
        )
    gen = torch.Generator().manual_seed(seed)
    if spec.dtype.startswith(("float", "bfloat")):
        return torch.randn(*full, generator=gen, dtype=getattr(torch, spec.dtype))
    if spec.dtype == "bool":
        return torch.rand(*full, generator=gen) > 0.5
    return torch.randint(0, 2, full, generator=gen, dtype=getattr(torch, spec.dtype))


@dataclass
class _Examples:
    args: tuple[torch.Tensor, ...]
    kwargs: dict[str, torch.Tensor]
    specs: dict[str, TensorSpec]

    @property
    def document(self) -> Any:
        """The spec's ``input:``."""
        out: dict[str, Any] = {}
        for name, spec in self.specs.items():
            d: dict[str, Any] = {"shape": list(spec.shape)}
            if spec.dtype != "float32":
                d["dtype"] = spec.dtype
            if not spec.batch:
                d["batch"] = False
            out[name] = d
        if not self.kwargs:
            one = out["input"]
            return one["shape"] if list(one) == ["shape"] else one
        return out


def _examples(input: Inputs, dtype: str, batch: int = BATCH) -> _Examples:
    if isinstance(input, Mapping):
        specs = {k: _tensor_spec(v, dtype) for k, v in input.items()}
        kwargs = {k: _make_example(v, specs[k], batch, i) for i, (k, v) in enumerate(input.items())}
        return _Examples((), kwargs, specs)
    spec = _tensor_spec(input, dtype)
    return _Examples((_make_example(input, spec, batch, 0),), {}, {"input": spec})


def import_module(
    module: nn.Module,
    input: Inputs,
    *,
    dtype: str = "float32",
    allow_custom: bool = False,
    name: str | None = None,
    schema: str | None = None,
    source: str | None = None,
) -> Imported:
    """The spec text of ``module``, traced in eval mode on an example of shape ``input``.

    Raises :class:`SpecImportError` listing everything the spec format cannot express.
    ``source`` names where the module came from (``torchvision.models:resnet50``), for the
    header; ``schema`` is the modeline's schema reference.
    """
    examples = _examples(input, dtype)
    was = module.training
    module.eval()
    try:
        without_grad: list[str] = []
        hooks = [
            sub.register_forward_pre_hook(
                lambda *_, name=name: None if torch.is_grad_enabled() else without_grad.append(name)
            )
            for name, sub in module.named_modules()
            if name
        ]
        try:
            try:
                module(*examples.args, **examples.kwargs)
            except Exception as exc:  # the user's model, on the input they gave
                shapes = ", ".join(
                    str(list(t.shape)) for t in [*examples.args, *examples.kwargs.values()]
                )
                raise ModelError(
                    f"{qualname(type(module))} fails on an example batch of shape {shapes} "
                    f"({type(exc).__name__}: {_first(exc)}): check --input and --dtype"
                ) from None
        finally:
            for hook in hooks:
                hook.remove()
        if without_grad:  # torch.no_grad() inside forward: fx does not see it
            raise SpecImportError(
                [
                    Problem(
                        name,
                        qualname(type(module.get_submodule(name))),
                        "forward calls it with gradients switched off (torch.no_grad()); "
                        "a spec cannot",
                    )
                    for name in without_grad
                ]
            )
        _refuse_tied(module)
        unbatched = frozenset(k for k, v in examples.specs.items() if not v.batch)
        tree, imp = convert(module, examples.args, examples.kwargs, unbatched, allow_custom)
    finally:
        module.train(was)
    if imp.problems or tree is None:
        raise SpecImportError(
            imp.problems or [Problem("", qualname(type(module)), "nothing to import")]
        )
    model = model_node(tree)
    blocks = make_blocks(model)
    for block in blocks.values():
        shorten(block["body"], blocks)
    shorten(model, blocks)
    doc: dict[str, Any] = {"version": 1}
    if name:
        doc["name"] = name
    doc["input"] = examples.document
    if blocks:
        doc["blocks"] = blocks
    doc["model"] = model
    header = [
        f"# yaml-language-server: $schema={schema or schema_reference(Path.cwd() / 'spec.yaml')}"
    ]
    how = f"`specnet import {source}`" if source else "specnet.from_module"
    header.append(f"# {qualname(type(module))}, imported by {how}.")
    header.append("# Each node's comment is its output shape for one sample.")
    custom = {v: k for k, v in imp.custom.items()}
    for kind, cls in custom.items():
        header.append(
            f"# {kind} is {qualname(cls)}, kept as a custom type: register it before building "
            f"(specnet.register({cls.__name__}, shape=...)) to use this spec."
        )
    text = dump(doc, header)
    _valid(text, module, custom)
    return Imported(text, custom)


def _valid(text: str, module: nn.Module, custom: dict[str, type]) -> None:
    """The spec validates and its shapes infer (what specnet refuses, such as an LSTM with
    ``batch_first=False``, is a problem of the import, not a file that fails later)."""
    from specnet._front.errors import SpecError, format_path
    from specnet._front.infer import infer

    if custom:  # its types are registered only once the user registers them
        return
    try:
        infer(_load(text))
    except SpecError as exc:
        raise SpecImportError(
            [
                Problem(
                    "",
                    qualname(type(module)),
                    f"the spec it gives is refused: {format_path(e.path)}: {e.msg}",
                )
                for e in exc.errors
            ]
        ) from None


def schema_reference(target: Path) -> str:
    """The modeline's reference to specnet's JSON Schema, for a spec written at ``target``: a
    relative path to the schema file this installation carries (a checkout's
    ``schemas/specnet.schema.json``)."""
    schema = schema_path()
    if schema.exists():
        try:
            return Path(os.path.relpath(schema, target.resolve().parent)).as_posix()
        except ValueError:  # another drive
            return schema.as_uri()
    return "specnet.schema.json"


def from_module(
    module: nn.Module,
    input: Inputs,
    *,
    dtype: str = "float32",
    allow_custom: bool = False,
    path: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> Spec:
    """The spec of an ``nn.Module``: its ``forward`` read with ``torch.fx`` on an example.

    ``input`` is the shape of one sample (``(3, 224, 224)``) or an example batch. The spec
    builds (``specnet.build``) to a module with the same ``state_dict`` keys and shapes, so
    ``load_state_dict(module.state_dict(), strict=True)`` loads the original weights, and
    computes the same outputs: ``check`` (the default) builds it and verifies that, on
    another batch size in float64, and raises :class:`SpecImportError` if not. With ``path``
    the YAML is written there too (and errors point into it). What a spec cannot express
    raises :class:`SpecImportError`, listing each with the submodule's path and the line of
    Python; a module that fails on the example raises a ``SpecnetError``. ``allow_custom``
    keeps an unregistered submodule that cannot be read as a custom type named after its
    class, registered for this process with a shape rule that runs it (on the meta device
    where it can).
    """
    target = Path(path) if path is not None else None
    imported = import_module(
        module,
        input,
        dtype=dtype,
        allow_custom=allow_custom,
        schema=schema_reference(target) if target is not None else None,
    )
    for kind, cls in imported.custom.items():
        register_custom(kind, cls)
    if target is not None:
        target.write_text(imported.text, encoding="utf-8")
    spec = _load(target if target is not None else imported.text)
    if check:
        result = match(module, spec, input, dtype=dtype)
        if not result.exact:
            raise SpecImportError(
                [Problem("", qualname(type(module)), f"the spec computes something else: {result}")]
            )
    return spec


def _load(source: Spec | str | os.PathLike[str]) -> Spec:
    """A spec validated (a file path, or YAML text)."""
    if isinstance(source, Spec):
        return source
    return validate_document(read_document(source))


def register_custom(kind: str, cls: type) -> None:
    """Registers an unregistered class kept as a custom type, for this process: its shapes
    come from running it (on the meta device where it can)."""
    from specnet._build.register import register

    def shape(args: dict[str, Any], input_shape: tuple[int, ...]) -> tuple[int, ...]:
        # on the meta device where the layer allows it; a forward that reads values runs
        # on one sample of zeros
        try:
            with torch.device("meta"):
                out = cls(**args)(torch.empty(1, *input_shape))
        except (RuntimeError, NotImplementedError):
            with torch.no_grad():
                out = cls(**args)(torch.zeros(1, *input_shape))
        return tuple(out.shape[1:])

    register(cls, name=kind, shape=shape)


@dataclass
class Match:
    """How an imported spec's model compares with the module it came from."""

    keys: bool
    """Same state_dict key names, in the same order."""
    shapes: bool
    loads: bool
    """``load_state_dict(original, strict=True)`` succeeded."""
    max_diff: float | None
    """Largest absolute difference of the eval outputs (float64), ``None`` if not compared."""
    message: str = ""

    def __str__(self) -> str:
        if not self.loads:
            return f"the module's state_dict does not load into it ({self.message})"
        keys = (
            "same state_dict keys and shapes, in the same order"
            if self.keys
            else ("same state_dict keys and shapes, in another order")
        )
        if self.max_diff is None:
            return f"{keys}; loads strictly; outputs differ in kind ({self.message})"
        verdict = "outputs match" if self.max_diff <= 1e-6 else "OUTPUTS DIFFER"
        return f"{keys}; loads strictly; {verdict} (max |difference| {self.max_diff:.1e}, float64, eval mode)"

    @property
    def exact(self) -> bool:
        return (
            self.keys
            and self.shapes
            and self.loads
            and self.max_diff is not None
            and self.max_diff <= 1e-6
        )


def match(
    module: nn.Module,
    spec: Spec | str | os.PathLike[str],
    input: Inputs,
    *,
    dtype: str = "float32",
    batch: int = 3,
) -> Match:
    """Builds ``spec``, loads ``module``'s weights into it strictly and compares their outputs
    in eval mode, in float64, on a batch of another size than the import's example."""
    built = build_module(_load(spec))
    mine, theirs = built.state_dict(), module.state_dict()
    keys = list(mine) == list(theirs)
    shapes = set(mine) == set(theirs) and all(mine[k].shape == theirs[k].shape for k in mine)
    try:
        built.load_state_dict(theirs, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return Match(keys, shapes, False, None, " ".join(lines[:3])[:400])
    ex = _examples(input, dtype, batch)
    original = copy.deepcopy(module).eval().double()
    built.eval().double()

    def inputs() -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """A copy for each model: a forward that changes its input in place changes it
        for that model only."""
        return (
            [_double(x) for x in ex.args],
            {k: _double(x) for k, x in ex.kwargs.items()},
        )

    with torch.no_grad():
        args, kwargs = inputs()
        try:
            a = original(*args, **kwargs)
        except Exception as exc:  # the user's model
            raise ModelError(
                f"{qualname(type(module))} fails on a batch of {batch} samples "
                f"in float64 ({type(exc).__name__}: {_first(exc)}): it depends on the batch "
                "size, or on float32 (the check runs both models in float64)"
            ) from None
        args, kwargs = inputs()
        b = built(*args, **kwargs)
    diff = _diff(a, b)
    return Match(
        keys, shapes, True, diff, "" if diff is not None else "outputs of other shapes or dtypes"
    )


def _refuse_tied(module: nn.Module) -> None:
    """One tensor under two names (tied weights: ``head.weight = embed.weight``): a spec
    gives each layer its own."""
    names: dict[int, list[str]] = {}
    for name, t in [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]:
        names.setdefault(id(t), []).append(name)
    tied = [group for group in names.values() if len(group) > 1]
    if tied:
        raise SpecImportError(
            [
                Problem(
                    group[0].rpartition(".")[0],
                    qualname(type(module.get_submodule(group[0].rpartition(".")[0]))),
                    f"{' and '.join(group)} are one tensor (tied weights): a spec gives each "
                    "layer its own",
                )
                for group in tied
            ]
        )


def _double(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.is_floating_point() else x.clone()


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def _diff(a: Any, b: Any) -> float | None:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return None
        if not a.numel():
            return 0.0
        same = (a == b) | (a.isnan() & b.isnan())  # equal infinities are no difference
        return float(torch.where(same, 0, (a.double() - b.double()).abs()).max())
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        diffs = [_diff(x, y) for x, y in zip(a, b, strict=True)]
        return (
            None
            if any(d is None for d in diffs)
            else max((d for d in diffs if d is not None), default=0.0)
        )
    return None
