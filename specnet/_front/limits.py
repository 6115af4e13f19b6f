"""Every limit specnet puts on a spec, in one place.

They bound the work any input can cause: reading, expanding blocks and ``repeat``,
and building. A spec past one is refused with a located error that names the limit.
"""

from __future__ import annotations

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_INPUTS", "MAX_LAYERS", "MAX_NODES"]

MAX_BYTES = 2 * 1024 * 1024
"""Largest spec text accepted."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted."""
MAX_NODES = 200_000
"""Most values a document may hold once its aliases are expanded."""
MAX_LAYERS = 100_000
"""Most layers a model may have once blocks, ``repeat`` and stacked layers
(``num_layers`` of a transformer or recurrent stack) are expanded."""
MAX_INPUTS = 8
"""Most inputs an ``Add``, ``Mul`` or ``Concat`` takes (TorchScript has no ``*args``)."""
