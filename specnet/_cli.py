"""The ``specnet`` command: a thin layer over the library.

Importing this module is cheap (no torch); each command imports what it needs.
Exit codes: 0 success, 1 the spec (or run) is invalid, 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _validate(args: argparse.Namespace) -> int:
    from ._api import check
    from ._errors import SpecError

    status = EXIT_OK
    bad = 0
    for name in args.files:
        if not Path(name).is_file():
            print(f"{name}: no such file", file=sys.stderr)
            status = EXIT_USAGE
            continue
        try:
            check(Path(name))
        except SpecError as exc:
            bad += 1
            for err in exc.errors:
                print(err)
            status = max(status, EXIT_INVALID) if status != EXIT_USAGE else status
    if not args.quiet:
        total = len(args.files)
        print(f"{total - bad} of {total} spec(s) valid", file=sys.stderr)
    return status


def _schema(args: argparse.Namespace) -> int:
    from ._jsonschema import schema_text

    text = schema_text()
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output)
    if args.check:
        current = out.read_text("utf-8") if out.is_file() else ""
        if current != text:
            print(f"{out} is stale: run 'specnet schema' to regenerate it", file=sys.stderr)
            return EXIT_INVALID
        return EXIT_OK
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    from ._api import summary
    from ._errors import SpecError

    try:
        print(summary(Path(args.file)))
    except SpecError as exc:
        print(exc)
        return EXIT_INVALID
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from ._api import load
    from ._errors import SpecError
    from ._export import export_onnx, python_source

    try:
        spec = load(Path(args.file))
        if args.format == "onnx":
            out = args.output or str(Path(args.file).with_suffix(".onnx"))
            export_onnx(spec, out)
            print(f"wrote {out}", file=sys.stderr)
            return EXIT_OK
        text = python_source(spec)
    except SpecError as exc:
        print(exc)
        return EXIT_INVALID
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, "utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="specnet",
        description="Declarative PyTorch networks: validate, build and train YAML/JSON specs.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    v = sub.add_parser(
        "validate",
        help="check spec files, shapes included; one line per error (file:line:col: path: message)",
    )
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    v.set_defaults(run=_validate)

    s = sub.add_parser("schema", help="write the JSON Schema that editors and check-jsonschema use")
    s.add_argument(
        "-o",
        "--output",
        default="schemas/specnet.schema.json",
        help="where to write ('-' for stdout)",
    )
    s.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    s.set_defaults(run=_schema)

    m = sub.add_parser(
        "summary", help="per-layer output shapes, parameters and multiply-accumulates"
    )
    m.add_argument("file", metavar="FILE")
    m.set_defaults(run=_summary)

    e = sub.add_parser("export", help="write the model as plain PyTorch source or ONNX")
    e.add_argument("file", metavar="FILE")
    e.add_argument("--format", choices=["python", "onnx"], default="python")
    e.add_argument("-o", "--output", help="output file (python: default stdout; onnx: FILE.onnx)")
    e.set_defaults(run=_export)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code
