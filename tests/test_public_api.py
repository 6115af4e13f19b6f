"""The public surface is exactly what __all__ says."""

from __future__ import annotations

import specnet


def test_all_is_exactly_the_public_names() -> None:
    public = {name for name in dir(specnet) if not name.startswith("_")}
    assert public == set(specnet.__all__) - {"__version__"}


def test_errors_are_value_errors() -> None:
    assert issubclass(specnet.SpecError, ValueError)
    for cls in (specnet.SpecSyntaxError, specnet.SpecValidationError, specnet.SpecShapeError):
        assert issubclass(cls, specnet.SpecError)
