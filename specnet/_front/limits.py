"""Every limit specnet puts on a spec, in one place.

They bound the work any input can cause: reading, expanding blocks and ``repeat``,
and building. A spec past one is refused with a located error that names the limit.
"""

from __future__ import annotations

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_EXAMPLE_ELEMENTS",
    "MAX_EXPANDED",
    "MAX_INPUTS",
    "MAX_INT",
    "MAX_LAYERS",
    "MAX_NAME",
    "MAX_NODES",
    "MAX_PARAMETERS",
    "MAX_ROUND_DIGITS",
    "MAX_SUGGEST",
    "MAX_SYNTHETIC_ELEMENTS",
    "MAX_THREADS",
]

# The limits are fixed (not settings): each error that reports one says so. A model past
# them is far beyond what fits on one machine; raising one means editing this file.

MAX_BYTES = 2 * 1024 * 1024
"""Largest spec text accepted."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted, aliases expanded."""
MAX_NODES = 200_000
"""Most values a document may hold once its aliases are expanded."""
MAX_LAYERS = 100_000
"""Most layers a model may have once blocks, ``repeat`` and stacked layers
(``num_layers`` of a transformer or recurrent stack) are expanded."""
MAX_INPUTS = 8
"""Most inputs an ``Add``, ``Mul`` or ``Concat`` takes (TorchScript has no ``*args``)."""
MAX_INT = 2**63 - 1
"""Largest integer a spec may write (torch's sizes are 64-bit)."""
MAX_EXPANDED = 1_000_000
"""Most values block bodies may hold in all, once their parameters are substituted
(counted before anything is copied)."""
MAX_ELEMENTS = 2**40
"""Most elements one sample's tensor may have, at the input and after every layer."""
MAX_PARAMETERS = 10**11
"""Most parameters (and buffer elements) a model may hold: 400 GB in float32."""
MAX_ROUND_DIGITS = 400
"""Most digits, either side of the point, an expression's ``round(x, n)`` may round to (a
float has 17 significant digits and no exponent past 308; a larger ``-n`` would make Python
compute ``10**-n``)."""
MAX_SYNTHETIC_ELEMENTS = 2**36
"""Most elements a ``Synthetic`` data set may generate for one split: its samples times the
elements of one sample's input and target (256 GiB of float32). ``specnet validate`` counts a
regression target (shaped like the model's output) as nothing, as it does not infer shapes;
loading the data set counts it."""
MAX_NAME = 64
"""Longest spec ``name:``."""
MAX_SUGGEST = 64
"""Longest unknown name for which "did you mean" looks for suggestions."""
MAX_THREADS = 4096
"""Most CPU threads ``train.threads`` may fix (and a run's record may hold)."""
MAX_EXAMPLE_ELEMENTS = 2**30
"""Most elements the example inputs of an ONNX export may hold in all (``--batch`` times each
input's sample): 4 GiB of float32."""
