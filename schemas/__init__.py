"""The JSON Schema of spec files (specnet.schema.json).

This folder is installed as the package ``specnet._schemas`` (see pyproject.toml), so the
file that editors point at in a checkout is the one the wheel carries; ``specnet schema``
regenerates it and ``specnet.schema_path()`` finds it.
"""
