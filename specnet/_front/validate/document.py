"""The document's top level: ``version``, ``name``, ``input``, ``params``, ``variants``,
``variant``, ``blocks``, ``model``, ``train``."""

from __future__ import annotations

import math
from typing import Any

from ..errors import Path, SpecValidationError, did_you_mean
from ..limits import MAX_ELEMENTS, MAX_NAME
from ..source import Document
from ..spec import DTYPES, Graph, Node, Sequential, Spec, TensorSpec, unknown_dtype
from ..types import describe
from .args import fits, wrong_value
from .blocks import substitute
from .context import LAYER_NAME, SPEC_NAME, Ctx, TooLarge, show
from .walk import Walker

__all__ = ["Checker", "validate_document"]

_TOP_KEYS = (
    "version",
    "name",
    "input",
    "params",
    "variants",
    "variant",
    "blocks",
    "model",
    "train",
)


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
                        f"input name '{name}' must use only letters, digits, '_' and '-'",
                        key=True,
                    )
                    continue
                t = self.tensor(value, (*path, name), named=True)
                if t is not None:
                    out[name] = t
            if out and not any(t.batch for t in out.values()):
                self.error(path, "at least one input needs the batch dimension ('batch: true')")
                return None
            return out if len(out) == len(raw) else None
        t = self.tensor(raw, path)
        return None if t is None else {"input": t}

    def tensor(self, raw: Any, path: Path, named: bool = False) -> TensorSpec | None:
        """An input; one of several ``named`` inputs may have no batch (``batch: false``)."""
        dtype = "float32"
        shape = raw
        batch = True
        keys = ("shape", "dtype", "batch") if named else ("shape", "dtype")
        if isinstance(raw, dict):
            for k in raw:
                if k not in keys:
                    self.error(
                        (*path, k),
                        "'batch' is for one of several named inputs, the model's input has "
                        "the batch dimension"
                        if k == "batch"
                        else f"unknown key '{k}' in an input" + did_you_mean(k, keys),
                        key=True,
                        kind="unknown_key",
                    )
                    return None
            batch = raw.get("batch", True)
            if not isinstance(batch, bool):
                self.error((*path, "batch"), f"'batch' is true or false, got {show(batch)}")
                return None
            if "shape" not in raw:
                self.error((*path, "shape"), "an input needs a 'shape'", kind="missing")
                return None
            shape = raw["shape"]
            dtype = raw.get("dtype", "float32")
            if dtype not in DTYPES:
                self.error((*path, "dtype"), unknown_dtype(dtype), kind="type")
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
        return TensorSpec(shape=tuple(shape), dtype=dtype, batch=batch)

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
        self.globals = self.model_params(data)
        shape = data.get("input")
        if self.globals or self.unset:  # a variant may set the input size: [3, $res, $res]
            self.check_refs(shape, ("input",), set(self.globals) | self.unset, what="parameter")
            shape = substitute(shape, ("input",), self.globals, self.failed_at(None))
        inputs = self.inputs(shape)
        if "blocks" in data:
            self.define_blocks(data["blocks"])
        model: Node | None = None
        if "model" not in data:
            self.error(("model",), "missing 'model': the network", kind="missing")
        else:
            self.alone(
                data["model"], ("model",), "the model itself", ("for", "if", "splice"), Ctx()
            )
            raw = data["model"]
            self.check_refs(raw, ("model",), set(self.globals) | self.unset, what="parameter")
            if self.globals:
                raw = substitute(raw, ("model",), self.globals, self.failed_at(None))
            ctx = Ctx(env=self.globals, placeholders=frozenset(self.unset))
            try:
                n = self.repeat_of(raw, ("model",), ctx)
                model = self.node(raw, ("model",), ctx)
                if model is not None and n is not None and n > 1:
                    self.count(model, n, ("model", "repeat"), ctx)
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
            if train is not None and inputs is not None and len(inputs) == 1:
                from ..trainspec import check_data_size

                check_data_size(self, train, math.prod(next(iter(inputs.values())).shape))
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

    def model_params(self, data: dict[str, Any]) -> dict[str, Any]:
        """The model's parameters: ``params:`` defaults, then the chosen variant's values."""
        if "params" not in data and "variants" not in data:
            if "variant" in data:
                self.error(("variant",), "this spec has no 'variants' to choose from")
            return {}
        params = self.block_params(data.get("params"), ("params",), what="model parameter")
        if params is None:
            return {}
        variants = data.get("variants") or {}
        if not isinstance(variants, dict):
            self.error(
                ("variants",),
                f"'variants' maps variant names to parameter values, got {show(variants)}",
            )
            return {}
        for vname, given in variants.items():
            if not isinstance(given, dict):
                self.error(
                    ("variants", vname),
                    f"a variant maps parameter names to values, got {show(given)}",
                )
                continue
            for k in given:
                if k not in params:
                    self.error(
                        ("variants", vname, k),
                        f"unknown parameter '{k}' (the spec's 'params' are "
                        f"{', '.join(params) or 'none'})" + did_you_mean(k, list(params)),
                        key=True,
                        kind="unknown_key",
                    )
        chosen = data.get("variant")
        picked: dict[str, Any] = {}
        if chosen is not None:
            if not isinstance(chosen, str) or chosen not in variants:
                self.error(
                    ("variant",),
                    f"unknown variant {show(chosen)}; the spec's variants are "
                    f"{', '.join(map(str, variants)) or 'none'}"
                    + did_you_mean(str(chosen), [str(v) for v in variants]),
                )
                self.unset.update(params)
                return {}
            picked = variants[chosen] if isinstance(variants[chosen], dict) else {}
        values: dict[str, Any] = {}
        for pname, spec in params.items():
            where: Path
            if pname in picked:
                value, where = picked[pname], ("variants", str(chosen), pname)
            elif isinstance(spec, tuple):
                value, where = spec[1], ("params", pname)
            else:
                choose = ", ".join(map(str, variants))
                self.error(
                    ("params", pname),
                    f"model parameter '{pname}' has no default: choose a variant"
                    + (f" ({choose}) with --variant or variant=" if choose else ""),
                    kind="missing",
                )
                self.unset.add(pname)
                continue
            if not isinstance(spec, tuple) and not fits(spec, value):
                self.error(where, wrong_value(describe(spec), value), kind="type")
                self.unset.add(pname)
                continue
            values[pname] = value
        return values

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
    checker.emit_warnings()
    return spec
