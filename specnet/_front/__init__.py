"""The torch-free front end: reading, validating and shape-checking specs."""
