"""The document's top level: ``version``, ``name``, ``input``, ``blocks``, ``model``, ``train``."""

from __future__ import annotations

import math
from typing import Any

from ..errors import Path, SpecValidationError, did_you_mean
from ..limits import MAX_ELEMENTS, MAX_NAME
from ..source import Document
from ..spec import DTYPES, Graph, Node, Sequential, Spec, TensorSpec
from .context import LAYER_NAME, SPEC_NAME, Ctx, TooLarge, show
from .walk import Walker

__all__ = ["Checker", "validate_document"]

_TOP_KEYS = ("version", "name", "input", "blocks", "model", "train")


class Checker(Walker):
    """Walks a whole document, collecting every error."""

    def inputs(self, raw: Any) -> dict[str, TensorSpec] | None:
        path: Path = ("input",)
        if raw is None:
            self.error(
                path,
                "missing 'input': the shape of one sample, e.g. input: [1, 28, 28]",
                kind="missing",
            )
            return None
        if isinstance(raw, dict) and "shape" not in raw and "dtype" not in raw:
            if not raw:
                self.error(path, "'input' must name at least one input")
                return None
            out = {}
            for name, value in raw.items():
                if not LAYER_NAME.fullmatch(name):
                    self.error(
                        (*path, name),
                        f"input name '{name}' must use only letters, digits and '_'",
                        key=True,
                    )
                    continue
                t = self.tensor(value, (*path, name))
                if t is not None:
                    out[name] = t
            return out if len(out) == len(raw) else None
        t = self.tensor(raw, path)
        return None if t is None else {"input": t}

    def tensor(self, raw: Any, path: Path) -> TensorSpec | None:
        dtype = "float32"
        shape = raw
        if isinstance(raw, dict):
            for k in raw:
                if k not in ("shape", "dtype"):
                    self.error(
                        (*path, k),
                        f"unknown key '{k}' in an input" + did_you_mean(k, ["shape", "dtype"]),
                        key=True,
                        kind="unknown_key",
                    )
                    return None
            if "shape" not in raw:
                self.error((*path, "shape"), "an input needs a 'shape'", kind="missing")
                return None
            shape = raw["shape"]
            dtype = raw.get("dtype", "float32")
            if dtype not in DTYPES:
                self.error(
                    (*path, "dtype"),
                    f"unknown dtype {show(dtype)}" + did_you_mean(str(dtype), DTYPES),
                    kind="type",
                )
                return None
            path = (*path, "shape")
        if not isinstance(shape, list) or not shape:
            msg = (
                "a shape is a non-empty list of whole numbers >= 1 (one sample, no batch dimension)"
            )
            self.error(path, f"{msg}, got {show(shape)}", kind="type")
            return None
        bad = [
            i for i, d in enumerate(shape) if isinstance(d, bool) or not isinstance(d, int) or d < 1
        ]
        for i in bad:
            msg = f"a dimension must be a whole number >= 1, got {show(shape[i])}"
            self.error((*path, i), msg, kind="type")
        if bad:
            return None
        if math.prod(shape) > MAX_ELEMENTS:
            self.error(
                path,
                f"an input of more than {MAX_ELEMENTS} elements per sample "
                "(a fixed limit, specnet._front.limits.MAX_ELEMENTS)",
            )
            return None
        return TensorSpec(shape=tuple(shape), dtype=dtype)

    def spec(self, data: Any) -> Spec | None:
        if not isinstance(data, dict):
            what = "an empty document" if data is None else show(data)
            self.error(
                (),
                f"a spec is a mapping with at least 'input' and 'model', got {what}",
                kind="type",
            )
            return None
        for k in data:
            if k not in _TOP_KEYS:
                self.error(
                    (k,),
                    f"unknown top-level key '{k}'" + did_you_mean(k, _TOP_KEYS),
                    key=True,
                    kind="unknown_key",
                )
        version = data.get("version", 1)
        if version != 1 or isinstance(version, bool):
            self.error(
                ("version",),
                f"unsupported spec version {show(version)}: this specnet reads version 1",
            )
        name = data.get("name")
        if name is not None and not (isinstance(name, str) and SPEC_NAME.fullmatch(name)):
            self.error(
                ("name",),
                f"'name' must be a name of letters, digits, '_', '-' and '.', starting with a "
                f"letter or digit, at most {MAX_NAME} characters (it names files and code), "
                f"got {show(name)}",
                kind="type",
            )
            name = None
        inputs = self.inputs(data.get("input"))
        if "blocks" in data:
            self.define_blocks(data["blocks"])
        model: Node | None = None
        if "model" not in data:
            self.error(("model",), "missing 'model': the network", kind="missing")
        else:
            try:
                n = self.repeat_of(data["model"], ("model",), Ctx())
                model = self.node(data["model"], ("model",), Ctx())
                if model is not None and n is not None and n > 1:
                    self.count(model, n, ("model", "repeat"), Ctx())
                    model = Sequential(("model",), tuple((str(i), model) for i in range(n)))
            except TooLarge:
                model = None
        if model is not None and inputs is not None:
            self.check_model_inputs(model, inputs)
        train = None
        if data.get("train") is not None:
            # The train section's checks build on this package's argument checking.
            from ..trainspec import check_train

            train = check_train(self, data["train"])
        if self.errors or model is None or inputs is None:
            return None
        return Spec(
            version=1,
            name=name,
            inputs=inputs,
            model=model,
            train=train,
            data=self.doc.data,
            source=self.src,
        )

    def check_model_inputs(self, model: Node, inputs: dict[str, TensorSpec]) -> None:
        if len(inputs) == 1:
            if isinstance(model, Graph) and len(model.inputs) != 1:
                self.error(
                    ("model", "inputs"),
                    f"the graph takes {len(model.inputs)} inputs but the spec's 'input' gives one",
                )
            return
        if not isinstance(model, Graph):
            self.error(
                ("model",), f"a spec with several inputs ({', '.join(inputs)}) needs a Graph model"
            )
            return
        if "inputs" not in self.doc.data["model"]:
            return
        if set(model.inputs) != set(inputs):
            self.error(
                ("model", "inputs"),
                f"the graph's inputs {list(model.inputs)} differ from the spec's inputs {list(inputs)}",
            )


def validate_document(doc: Document) -> Spec:
    """The :class:`Spec` of a read document, ``train:`` included; raises every error at once."""
    checker = Checker(doc)
    spec = checker.spec(doc.data)
    if spec is None or checker.errors:
        raise SpecValidationError(checker.errors)
    return spec
