"""Shape rules: which arguments each layer's input determines.

``INFERS`` names, per layer type, the constructor arguments that follow from the
incoming tensor and may therefore be left out of a spec. It is plain data (no
torch import), read by the registry for validation and the JSON Schema.
"""

from __future__ import annotations

__all__ = ["INFERS"]


def _each(names: str, *args: str) -> dict[str, tuple[str, ...]]:
    return {name: args for name in names.split()}


INFERS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features",),
    "Bilinear": ("in1_features", "in2_features"),
    **_each("Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d", "in_channels"),
    **_each(
        "BatchNorm1d BatchNorm2d BatchNorm3d InstanceNorm1d InstanceNorm2d InstanceNorm3d SyncBatchNorm",
        "num_features",
    ),
    "GroupNorm": ("num_channels",),
    "LayerNorm": ("normalized_shape",),
    "RMSNorm": ("normalized_shape",),
    **_each("RNN LSTM GRU RNNCell LSTMCell GRUCell", "input_size"),
    "MultiheadAttention": ("embed_dim",),
    **_each("TransformerEncoderLayer TransformerDecoderLayer Transformer", "d_model"),
}
