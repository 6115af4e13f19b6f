"""Recurrent layers and cells."""

from __future__ import annotations

from .base import (
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _batch_first,
    _fill,
    _float,
    need_rank,
)

rules = RuleSet()

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


@rules.family(_GATES, infers=("input_size",))
def recurrent(name: str, gates: int, args: Args, inputs: list[Value]) -> Out:
    """(L, input_size) -> (output (L, D * H_out), h_n), LSTM ``(output, (h_n, c_n))``.

    ``D`` is 2 when bidirectional, ``H_out`` is ``proj_size`` when set, else
    ``hidden_size``. Per sample h_n is (D * num_layers, H_out) and c_n
    (D * num_layers, hidden_size); in the real tensors the batch is dimension 1.
    """
    _batch_first(args)
    x = _float(inputs[0], name)
    need_rank(x, (2,), name, "L, input_size")
    _fill(args, "input_size", x.shape[1], x)
    hidden, layers = args["hidden_size"], args["num_layers"]
    proj = args.get("proj_size") or 0
    if proj >= hidden:
        raise ShapeMismatch(
            f"proj_size {proj} must be smaller than hidden_size {hidden}", "proj_size"
        )
    h_out, d = proj or hidden, 2 if args["bidirectional"] else 1
    length = x.shape[0]
    step = 0
    for layer in range(layers):
        width = x.shape[1] if layer == 0 else d * h_out
        step += d * (gates * hidden * (width + h_out) + hidden * proj)
    out = TensorType((length, d * h_out), x.dtype)
    h = TensorType((d * layers, h_out), x.dtype)
    value: Value = (
        (out, (h, TensorType((d * layers, hidden), x.dtype))) if name == "LSTM" else (out, h)
    )
    return Out(value, args, length * step)


@rules.family({f"{k}Cell": g for k, g in _GATES.items()}, infers=("input_size",))
def recurrent_cell(name: str, gates: int, args: Args, inputs: list[Value]) -> Out:
    """One step, (input_size,) -> (hidden_size,); LSTMCell -> (h, c)."""
    x = _float(inputs[0], name)
    need_rank(x, (1,), name, "input_size")
    _fill(args, "input_size", x.shape[0], x)
    hidden = args["hidden_size"]
    h = TensorType((hidden,), x.dtype)
    macs = gates * hidden * (x.shape[0] + hidden)
    return Out((h, h) if name == "LSTMCell" else h, args, macs)
