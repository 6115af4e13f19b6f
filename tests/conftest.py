"""Every test, and every process a test starts, keeps prepared data sets in its own cache
folder (``$SPECNET_CACHE``), not the user's."""

from __future__ import annotations

import os
import tempfile


def pytest_configure() -> None:
    os.environ["SPECNET_CACHE"] = tempfile.mkdtemp(prefix="specnet-cache-")
