"""``python -m specnet._build.counts``: the language server's parameter counts.

Reads one JSON request per line (``{"uri", "ticket", "text"}``) and answers each with
``{"uri", "ticket", "params": {module name: parameters}}``, the counts ``specnet summary``
shows (a build on the meta device). A text that does not check answers with no counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from specnet._front.check import check_document
from specnet._front.infer import infer
from specnet._front.source import read_document
from specnet._front.spec import Spec

from .summary import summarize

__all__ = ["main"]


def _shapes(spec: Spec) -> None:
    infer(spec)


def counts(text: str) -> dict[str, int]:
    spec = check_document(read_document(text if "\n" in text else text + "\n"), _shapes)
    return {row.name: row.params for row in summarize(spec).rows}


def main() -> None:
    # Behind the editor's own work: the language server answers first on a busy machine.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            uri, ticket, text = request["uri"], request["ticket"], request["text"]
        except (ValueError, KeyError, TypeError):
            continue  # not a request of the server's
        try:
            params = counts(str(text))
        except Exception:  # a text torch refuses, or a bug: no counts, the worker goes on
            params = {}
        answer = {"uri": uri, "ticket": ticket, "params": params}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
