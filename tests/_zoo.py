"""The model zoo's table and its comparison harness (used by tests/test_zoo.py and bench/zoo.py).

Each :class:`Case` is one spec variant in ``examples/zoo/`` and the model it reproduces. The
harness builds both, compares their ``state_dict()`` key lists (names in order) and shapes,
copies the source's weights into the spec's model with ``load_state_dict(strict=True)``, and
compares their outputs in eval mode (float64). Large variants are compared on the meta device:
keys, shapes and parameter count, nothing allocated.

Other families add their rows to :data:`CASES`; a source is any factory of an ``nn.Module``
(torchvision, transformers, timm, all randomly initialised: nothing is downloaded).
"""

from __future__ import annotations

import ast
import importlib
import io
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

import specnet

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

Inputs = tuple[Any, ...]


def _images(shape: Sequence[int], generator: torch.Generator) -> Inputs:
    return (torch.randn(*shape, generator=generator, dtype=torch.float64),)


def _call(model: nn.Module, inputs: Inputs) -> Any:
    return model(*inputs)


@dataclass(frozen=True)
class Case:
    """One spec variant and the model it reproduces."""

    spec: str
    """The spec's path under ``examples/`` (``zoo/resnet.yaml``)."""
    variant: str | None
    """The variant to build (``None``: the spec's defaults)."""
    source: Callable[[], nn.Module]
    """Builds the reference model, randomly initialised."""
    input: tuple[int, ...] = ()
    """The batched input of the forward comparison (small batch and, where the architecture
    allows, a small spatial size); see :attr:`inputs` for anything but one float tensor."""
    how: Literal["forward", "meta"] = "forward"
    """``forward``: weights copied and eval outputs compared; ``meta``: keys, shapes and
    parameter count only, on the meta device (for large variants)."""
    inputs: Callable[[Sequence[int], torch.Generator], Inputs] = _images
    """The spec model's positional inputs, made from :attr:`input` (float64 where floating)."""
    call_source: Callable[[nn.Module, Inputs], Any] = _call
    """Calls the source model on those inputs (keyword arguments, ``.logits``, ...)."""
    train: bool = False
    """Also compare training-mode outputs, with every dropout probability set to 0 in both
    models (so the outputs are deterministic; batch norm then uses the batch's statistics)."""
    ops: str | None = None
    """The torchvision model name whose weights' ``meta["_ops"]`` gives its GFLOPS figure."""
    code: tuple[str, tuple[str, ...]] | None = None
    """The Python the spec replaces: a module and its top-level names (classes, builders,
    tables), counted by :func:`python_lines`."""
    name: str = field(default="")
    """The row's name (default: the variant, or the spec's stem)."""

    @property
    def id(self) -> str:
        return self.name or self.variant or Path(self.spec).stem

    @property
    def path(self) -> Path:
        return EXAMPLES / self.spec


# -- building and comparing -----------------------------------------------------------


def load(case: Case) -> specnet.Spec:
    """The case's spec, with its variant chosen."""
    return specnet.load(case.path, variant=case.variant)


def build(case: Case, device: str | None = None) -> nn.Module:
    """The spec's model (on ``device``: ``"meta"`` allocates nothing)."""
    return specnet.build(load(case), device=device)


def source(case: Case, device: str | None = None, seed: int = 0) -> nn.Module:
    """The reference model, randomly initialised (seeded), on ``device``.

    A source whose constructor reads tensor values (torchvision's RegNet computes its widths
    with ``torch.arange(...).tolist()``) cannot be built on the meta device; it is built on the
    CPU instead (a layout comparison does not look at devices)."""
    torch.manual_seed(seed)
    if device is None:
        return case.source()
    try:
        with torch.device(device):
            return case.source()
    except NotImplementedError:
        if device != "meta":
            raise
        return case.source()


def keys_and_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """``state_dict()`` keys in order, with their tensors' shapes."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_same_layout(ours: nn.Module, theirs: nn.Module) -> None:
    """The same state_dict keys in the same order, the same shapes, the same parameter count."""
    mine, reference = keys_and_shapes(ours), keys_and_shapes(theirs)
    missing = [k for k, _ in reference if k not in dict(mine)]
    extra = [k for k, _ in mine if k not in dict(reference)]
    assert not missing and not extra, f"missing {missing[:8]}, unexpected {extra[:8]}"
    assert [k for k, _ in mine] == [k for k, _ in reference], "same keys, different order"
    shapes = [(k, a, b) for (k, a), (_, b) in zip(mine, reference, strict=True) if a != b]
    assert not shapes, f"different shapes (key, spec, source): {shapes[:8]}"
    assert parameters(ours) == parameters(theirs)


def randomize(model: nn.Module, seed: int = 1) -> None:
    """Give every floating parameter and buffer random values, so that a comparison also
    covers the normalisations' affine parameters and running statistics (fresh ones are
    ones and zeros); variances stay positive."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                values = torch.rand(tensor.shape, generator=generator, dtype=torch.float64) + 0.5
            elif name.endswith(("running_mean", "bias")) or tensor.dim() == 1:
                values = 0.1 * torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
                if not name.endswith(("running_mean", "bias")):
                    values += 1.0  # a norm's weight: around one
            else:
                continue  # weights keep the source's own initialisation
            tensor.copy_(values.to(tensor.dtype))


def _no_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0


def _prefixed(label: str) -> Callable[[str], str]:
    return lambda message: f"{label}: {message}"


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Sequence):
        return [t for item in output for t in _tensors(item)]
    raise TypeError(f"not a tensor or a tuple of tensors: {type(output).__name__}")


def paired(case: Case) -> tuple[nn.Module, nn.Module]:
    """The spec's model holding the (randomised) source's weights, both float64."""
    theirs = source(case).double()
    randomize(theirs)
    ours = build(case).double()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def assert_same_outputs(case: Case, ours: nn.Module, theirs: nn.Module) -> None:
    """Eval outputs (and, for :attr:`Case.train`, training outputs) are the same."""
    inputs = case.inputs(case.input, torch.Generator().manual_seed(2))
    modes = [False, True] if case.train else [False]
    for training in modes:
        ours.train(training)
        theirs.train(training)
        if training:
            _no_dropout(ours)
            _no_dropout(theirs)
        with torch.no_grad():
            got = _tensors(ours(*inputs))
            expected = _tensors(case.call_source(theirs, inputs))
        assert len(got) == len(expected), (
            f"training={training}: {len(got)} outputs, expected {len(expected)}"
        )
        mode = "training" if training else "eval"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            torch.testing.assert_close(a, b, msg=_prefixed(f"{mode} output {i}"))


# -- the figures of the table ----------------------------------------------------------


def spec_lines(path: Path) -> int:
    """A spec's lines that hold something: neither blank nor only a comment."""
    return sum(
        1
        for line in path.read_text("utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def python_lines(module: str, names: Sequence[str]) -> int:
    """Lines of code of ``module``'s top-level ``names`` (classes, functions with their
    decorators, assignments): neither blank, nor only a comment, nor part of a docstring."""
    text = Path(importlib.import_module(module).__file__ or "").read_text("utf-8")
    tree = ast.parse(text)
    wanted: set[int] = set()
    found: set[str] = set()
    for node in tree.body:
        targets = _defined(node)
        if not targets & set(names):
            continue
        found |= targets
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        wanted |= set(range(start, (node.end_lineno or node.lineno) + 1))
    missing = set(names) - found
    if missing:
        raise LookupError(f"{module} defines no {sorted(missing)}")
    return len(wanted & _code_lines(text) - _docstring_lines(tree))


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def _code_lines(text: str) -> set[int]:
    """Lines on which a token other than a comment or a line break starts or continues."""
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip and token.type != tokenize.ENDMARKER:
            lines |= set(range(token.start[0], token.end[0] + 1))
    return lines


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            value = first.value if isinstance(first, ast.Expr) else None
            if (
                first is not None
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                lines |= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def torchvision_gmacs(model: str, size: int) -> tuple[float, int]:
    """torchvision's figure for ``model`` (its weights' ``meta["_ops"]``, which torchvision
    calls GFLOPS and counts as multiply-accumulates), read from the enum: no download.

    Of the model's weights, those evaluated at ``size`` (their transforms' ``crop_size``) if
    there are any, else the default ones; returned with the size the figure is for."""
    from torchvision.models import get_model_weights

    weights = list(get_model_weights(model))
    default = get_model_weights(model).DEFAULT
    crops = [getattr(w.transforms, "keywords", {}).get("crop_size") for w in weights]
    chosen = next((w for w, c in zip(weights, crops, strict=True) if c == size), default)
    crop = getattr(chosen.transforms, "keywords", {}).get("crop_size", size)
    return float(chosen.meta["_ops"]), int(crop)


# -- the table --------------------------------------------------------------------------


def torchvision_model(name: str, **kwargs: Any) -> nn.Module:
    from torchvision import models

    model: nn.Module = models.get_model(name, weights=None, **kwargs)
    return model


def _tv(
    spec: str,
    variant: str | None,
    input: tuple[int, ...],
    code: tuple[str, tuple[str, ...]],
    *,
    how: Literal["forward", "meta"] = "forward",
    model: str | None = None,
    train: bool = False,
    **kwargs: Any,
) -> Case:
    """A torchvision model: built by ``models.get_model``, its GFLOPS from its weights."""
    name = model or variant or Path(spec).stem
    return Case(
        spec,
        variant,
        partial(torchvision_model, name, **kwargs),
        input,
        how,
        train=train,
        ops=name,
        code=code,
        name=name,
    )


def _module(name: str, *names: str) -> tuple[str, tuple[str, ...]]:
    return f"torchvision.models.{name}", names


_RESNET = _module(
    "resnet",
    *("conv3x3", "conv1x1", "BasicBlock", "Bottleneck", "ResNet", "_resnet"),
    *(f"resnet{n}" for n in (18, 34, 50, 101, 152)),
)
_VGG = _module(
    "vgg",
    *("VGG", "make_layers", "cfgs", "_vgg"),
    *(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")),
)
_DENSENET = _module(
    "densenet", "_DenseLayer", "_DenseBlock", "_Transition", "DenseNet", "_densenet", "densenet121"
)
_SQUEEZENET = _module(
    "squeezenet", "Fire", "SqueezeNet", "_squeezenet", "squeezenet1_0", "squeezenet1_1"
)
_MOBILENET_V2 = _module("mobilenetv2", "InvertedResidual", "MobileNetV2", "mobilenet_v2")
_GOOGLENET = _module(
    "googlenet",
    *("GoogLeNetOutputs", "_GoogLeNetOutputs", "GoogLeNet", "Inception", "InceptionAux"),
    *("BasicConv2d", "googlenet"),
)
_ALEXNET = _module("alexnet", "AlexNet", "alexnet")

CASES: list[Case] = [
    _tv("zoo/resnet.yaml", "resnet18", (1, 3, 112, 112), _RESNET),
    _tv("zoo/resnet.yaml", "resnet34", (1, 3, 64, 64), _RESNET),
    _tv("zoo/resnet.yaml", "resnet50", (2, 3, 64, 64), _RESNET),
    _tv("zoo/resnet.yaml", "resnet101", (1, 3, 64, 64), _RESNET, how="meta"),
    _tv("zoo/resnet.yaml", "resnet152", (1, 3, 64, 64), _RESNET, how="meta"),
    _tv("zoo/vgg.yaml", "vgg11_bn", (1, 3, 32, 32), _VGG),
    _tv("zoo/vgg.yaml", "vgg16_bn", (1, 3, 32, 32), _VGG, how="meta"),
    _tv("zoo/vgg.yaml", "vgg11", (1, 3, 32, 32), _VGG, how="meta"),
    _tv("zoo/densenet.yaml", None, (1, 3, 64, 64), _DENSENET, model="densenet121"),
    _tv("zoo/squeezenet.yaml", "squeezenet1_0", (1, 3, 64, 64), _SQUEEZENET),
    _tv("zoo/squeezenet.yaml", "squeezenet1_1", (1, 3, 64, 64), _SQUEEZENET),
    _tv("zoo/mobilenet_v2.yaml", None, (2, 3, 32, 32), _MOBILENET_V2, model="mobilenet_v2"),
    _tv(
        "zoo/googlenet.yaml",
        None,
        (2, 3, 32, 32),
        _GOOGLENET,
        model="googlenet",
        train=True,
        init_weights=True,
    ),
    _tv("zoo/alexnet.yaml", None, (1, 3, 64, 64), _ALEXNET, model="alexnet"),
]
"""Every zoo entry: what tests/test_zoo.py checks and bench/zoo.py reports."""


# -- modern CNNs: torchvision's EfficientNet, MobileNetV3, ConvNeXt and RegNet ------------
# The Python counted is the family's module (its model classes, tables and builders); the
# shared ops they use from torchvision.ops (Conv2dNormActivation, SqueezeExcitation,
# StochasticDepth) and models._utils._make_divisible are not counted.

_EFFICIENTNET = _module("efficientnet", "_MBConvConfig", "MBConvConfig", "MBConv", "EfficientNet")
_EFFICIENTNET = (
    _EFFICIENTNET[0],
    (
        *_EFFICIENTNET[1],
        "_efficientnet",
        "_efficientnet_conf",
        *(f"efficientnet_b{n}" for n in range(4)),
    ),
)
_MOBILENET_V3 = _module("mobilenetv3", "InvertedResidualConfig", "InvertedResidual", "MobileNetV3")
_MOBILENET_V3 = (
    _MOBILENET_V3[0],
    (
        *_MOBILENET_V3[1],
        "_mobilenet_v3_conf",
        "_mobilenet_v3",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
    ),
)
_CONVNEXT = _module("convnext", "LayerNorm2d", "CNBlock", "CNBlockConfig", "ConvNeXt", "_convnext")
_CONVNEXT = (_CONVNEXT[0], (*_CONVNEXT[1], "convnext_tiny", "convnext_small"))
_REGNET = _module("regnet", "SimpleStemIN", "BottleneckTransform", "ResBottleneckBlock", "AnyStage")
_REGNET = (
    _REGNET[0],
    (
        *_REGNET[1],
        "BlockParams",
        "RegNet",
        "_regnet",
        "regnet_y_400mf",
        "regnet_y_800mf",
        "regnet_x_400mf",
    ),
)

CASES += [
    _tv("zoo/efficientnet.yaml", "efficientnet_b0", (2, 3, 64, 64), _EFFICIENTNET),
    _tv("zoo/efficientnet.yaml", "efficientnet_b1", (1, 3, 64, 64), _EFFICIENTNET, how="meta"),
    _tv("zoo/efficientnet.yaml", "efficientnet_b2", (1, 3, 32, 32), _EFFICIENTNET),
    _tv("zoo/efficientnet.yaml", "efficientnet_b3", (1, 3, 64, 64), _EFFICIENTNET, how="meta"),
    _tv("zoo/mobilenet_v3.yaml", "mobilenet_v3_large", (2, 3, 64, 64), _MOBILENET_V3),
    _tv("zoo/mobilenet_v3.yaml", "mobilenet_v3_small", (1, 3, 64, 64), _MOBILENET_V3),
    _tv("zoo/convnext.yaml", "convnext_tiny", (1, 3, 64, 64), _CONVNEXT),
    _tv("zoo/convnext.yaml", "convnext_small", (1, 3, 64, 64), _CONVNEXT, how="meta"),
    _tv("zoo/regnet.yaml", "regnet_y_400mf", (2, 3, 64, 64), _REGNET),
    _tv("zoo/regnet.yaml", "regnet_y_800mf", (1, 3, 64, 64), _REGNET, how="meta"),
    _tv("zoo/regnet.yaml", "regnet_x_400mf", (1, 3, 64, 64), _REGNET),
]


# -- transformers: torchvision's ViT, Hugging Face's GPT-2 and BERT -----------------------


def gpt2_model(**config: Any) -> nn.Module:
    """transformers' ``GPT2Model`` from ``GPT2Config(**config)`` (attention ``sdpa`` unless
    ``attn_implementation`` says otherwise)."""
    from transformers import GPT2Config, GPT2Model

    model: nn.Module = GPT2Model(GPT2Config(bos_token_id=0, eos_token_id=0, **config))
    return model


def bert_model(**config: Any) -> nn.Module:
    """transformers' ``BertModel`` (with its pooler) from ``BertConfig(**config)``."""
    from transformers import BertConfig, BertModel

    model: nn.Module = BertModel(BertConfig(**config))
    return model


def token_ids(vocab_size: int, shape: Sequence[int], generator: torch.Generator) -> Inputs:
    return (torch.randint(vocab_size, tuple(shape), generator=generator),)


def bert_inputs(
    vocab_size: int, type_vocab_size: int, shape: Sequence[int], generator: torch.Generator
) -> Inputs:
    """Token ids, token types and a padding mask: the last sequence is padded from half its
    length (``attention_mask`` false there)."""
    (ids,) = token_ids(vocab_size, shape, generator)
    (types,) = token_ids(type_vocab_size, shape, generator)
    mask = torch.ones(tuple(shape), dtype=torch.bool)
    mask[-1, shape[-1] // 2 :] = False
    return ids, types, mask


def call_keywords(
    names: Sequence[str], outputs: Sequence[str], model: nn.Module, inputs: Inputs
) -> Any:
    """Calls a Hugging Face model with the inputs as keyword arguments, returns its outputs."""
    result = model(**dict(zip(names, inputs, strict=True)))
    return tuple(getattr(result, name) for name in outputs)


_VIT = (
    "torchvision.models.vision_transformer",
    (
        *("MLPBlock", "EncoderBlock", "Encoder", "VisionTransformer", "_vision_transformer"),
        *("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"),
    ),
)
_GPT2 = (
    "transformers.models.gpt2.modeling_gpt2",
    (
        *("eager_attention_forward", "GPT2Attention", "GPT2MLP", "GPT2Block"),
        *("GPT2PreTrainedModel", "GPT2Model"),
    ),
)
_BERT = (
    "transformers.models.bert.modeling_bert",
    (
        *("BertEmbeddings", "eager_attention_forward", "BertSelfAttention", "BertSelfOutput"),
        *("BertAttention", "BertIntermediate", "BertOutput", "BertLayer", "BertEncoder"),
        *("BertPooler", "BertPreTrainedModel", "BertModel"),
    ),
)
TINY_GPT2 = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100, "n_positions": 32}
TINY_BERT = {
    **{"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    **{"intermediate_size": 128, "max_position_embeddings": 32},
}
_BERT_LARGE = {
    **{"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    **{"intermediate_size": 4096},
}
_GPT2_CALL = partial(call_keywords, ["input_ids"], ["last_hidden_state"])
_BERT_CALL = partial(
    call_keywords,
    ["input_ids", "token_type_ids", "attention_mask"],
    ["last_hidden_state", "pooler_output"],
)


def _gpt2(
    variant: str, input: tuple[int, ...], how: Literal["forward", "meta"], **config: Any
) -> Case:
    return Case(
        "zoo/gpt2.yaml",
        variant,
        partial(gpt2_model, **config),
        input,
        how,
        inputs=partial(token_ids, config.get("vocab_size", 50257)),
        call_source=_GPT2_CALL,
        code=_GPT2,
        name=f"gpt2-{variant}" if variant == "tiny" else variant,
    )


def _bert(
    variant: str, input: tuple[int, ...], how: Literal["forward", "meta"], **config: Any
) -> Case:
    return Case(
        "zoo/bert.yaml",
        variant,
        partial(bert_model, **config),
        input,
        how,
        inputs=partial(bert_inputs, config.get("vocab_size", 30522), 2),
        call_source=_BERT_CALL,
        code=_BERT,
        name=f"bert-{variant}" if variant == "tiny" else variant,
    )


CASES += [
    _tv("zoo/vit.yaml", "vit_b_16", (1, 3, 224, 224), _VIT),
    _tv("zoo/vit.yaml", "vit_b_32", (1, 3, 224, 224), _VIT, how="meta"),
    _tv("zoo/vit.yaml", "vit_l_16", (1, 3, 224, 224), _VIT, how="meta"),
    _tv("zoo/vit.yaml", "vit_l_32", (1, 3, 224, 224), _VIT, how="meta"),
    _tv("zoo/vit.yaml", "vit_h_14", (1, 3, 224, 224), _VIT, how="meta"),
    _gpt2("tiny", (2, 16), "forward", **TINY_GPT2),
    _gpt2("gpt2", (1, 16), "meta"),
    _gpt2("gpt2-medium", (1, 16), "meta", n_layer=24, n_embd=1024, n_head=16),
    _gpt2("gpt2-large", (1, 16), "meta", n_layer=36, n_embd=1280, n_head=20),
    _gpt2("gpt2-xl", (1, 16), "meta", n_layer=48, n_embd=1600, n_head=25),
    _bert("tiny", (2, 16), "forward", **TINY_BERT),
    _bert("bert-base", (1, 16), "meta"),
    _bert("bert-large", (1, 16), "meta", **_BERT_LARGE),
]
