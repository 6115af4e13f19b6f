"""The ``specnet`` command: parses the arguments and calls the library.

Importing this module is cheap (no torch); each command imports what it needs. An error a user
can cause is a :class:`~specnet._front.errors.SpecnetError`: its message is printed and the
command exits with its ``exit_code`` (0 success, 1 the spec or the run is invalid, 2 usage
errors, 130 interrupted); any other exception is a bug and keeps its traceback. A spec's
warnings (:class:`~specnet._front.errors.SpecWarning`) are printed on stderr as located lines,
each once, and leave the exit code as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from specnet._front.errors import (
    ErrorItem,
    SpecError,
    SpecnetError,
    SpecWarning,
    UsageError,
    format_path,
)
from specnet._front.trainspec import LOGGERS

__all__ = ["main"]

EXIT_OK = 0
EXIT_STALE = 1  # schema --check: the file is not up to date
EXIT_INTERRUPTED = 130
_QUICK_EXIT = ("train", "evaluate", "predict")
"""Commands whose process exits without the interpreter's teardown (see :func:`main`)."""

_NEEDS_TORCH = ("summary", "draw", "export", "import", "train", "evaluate", "predict")


def _validate(args: argparse.Namespace) -> int:
    from specnet._api import check

    status = EXIT_OK
    records: list[dict[str, Any]] = []
    for name in args.files:
        errors: list[ErrorItem] = []
        found: list[ErrorItem] = []
        if not Path(name).is_file():
            status = UsageError.exit_code
            errors.append(ErrorItem((), "no such file", kind="usage", file=name))
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SpecWarning)
                try:
                    check(Path(name), build=args.build, variant=args.variant)
                except SpecError as exc:  # reported, and the next file checked
                    errors.extend(exc.errors)
                    status = status or SpecError.exit_code
            for w in caught:
                if isinstance(w.message, SpecWarning):
                    if w.message.item not in found:
                        found.append(w.message.item)
                else:  # not the spec's: shown as Python shows it
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        records.append(_record(name, errors, found))
        if args.format == "text":
            for err in errors:
                if err.kind == "usage":
                    print(f"{name}: no such file", file=sys.stderr)
                else:
                    print(err)
            for item in found:
                print(SpecWarning(item), file=sys.stderr)
        elif args.format == "github":
            for err in errors:
                print(_github("error", err))
            for item in found:
                print(_github("warning", item))
    if args.format == "json":
        json.dump({"files": records}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        valid = sum(r["valid"] for r in records)
        print(f"{valid} of {len(records)} spec(s) valid", file=sys.stderr)
    return status


def _record(name: str, errors: list[ErrorItem], found: list[ErrorItem]) -> dict[str, Any]:
    """One file's verdict for ``--format json``."""

    def item(e: ErrorItem) -> dict[str, Any]:
        return {
            "line": e.line,
            "column": e.col,
            "path": format_path(e.path) if e.path else None,
            "message": e.msg + (" [" + "; ".join(e.notes) + "]" if e.notes else ""),
            "kind": e.kind,
        }

    return {
        "file": name,
        "valid": not errors,
        "errors": [item(e) for e in errors],
        "warnings": [item(w) for w in found],
    }


def _github(level: str, e: ErrorItem) -> str:
    """A GitHub Actions workflow command: the problem as an annotation on its line."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    where = [f"file={prop(e.file or '<spec>')}"]
    if e.line is not None:
        where += [f"line={e.line}", f"col={e.col}"]
    message = e.msg if not e.path else f"{format_path(e.path)}: {e.msg}"
    if e.notes:
        message += " [" + "; ".join(e.notes) + "]"
    return f"::{level} {','.join(where)},title=specnet validate::{data(message)}"


def _schema(args: argparse.Namespace) -> int:
    from specnet._front.schema import schema_path, schema_text

    if args.path:
        print(schema_path())
        return EXIT_OK
    text = schema_text()
    if args.output == "-" or args.print:
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output)
    if args.check:
        current = out.read_text("utf-8") if out.is_file() else ""
        if current != text:
            print(f"{out} is stale: run 'specnet schema' to regenerate it", file=sys.stderr)
            return EXIT_STALE
        return EXIT_OK
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _completion(args: argparse.Namespace) -> int:
    import shtab  # here, not at the top: --help stays as fast as it was

    sys.stdout.write(shtab.complete(parser(), shell=args.shell))
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    from specnet._api import load, summary

    spec = load(Path(args.file), variant=args.variant)
    print(summary(spec))
    if args.draw is not None:
        from specnet._draw.render import draw

        draw(spec, Path(args.draw), title=Path(args.file).name)
        print(f"wrote {args.draw}", file=sys.stderr)
    return EXIT_OK


def _lsp(args: argparse.Namespace) -> int:
    from specnet._front.extras import LSP_NEEDS, require

    require(LSP_NEEDS)
    from specnet._lsp.server import main as serve

    return serve()


def _draw(args: argparse.Namespace) -> int:
    from specnet._api import load
    from specnet._draw.render import draw

    spec = load(Path(args.file), variant=args.variant)
    draw(spec, Path(args.output), title=Path(args.file).name)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from specnet._front.extras import export_needs, require

    named_onnx = args.output is not None and args.output.lower().endswith(".onnx")
    if args.format is None:  # from the output's name: -o model.onnx is ONNX
        args.format = "onnx" if named_onnx else "python"
    elif args.format == "python" and named_onnx:
        raise UsageError(f"-o {args.output} names an ONNX file: --format onnx, or another name")
    require(export_needs(args.format))  # onnx's packages, before the model is built
    from specnet._api import load
    from specnet._build.export import export_onnx, python_source
    from specnet._front.outputs import check_writable

    if args.format != "onnx" and (args.batch is not None or args.verbose):
        raise UsageError("--batch and --verbose are options of --format onnx")
    spec = load(Path(args.file), variant=args.variant)
    if args.format == "onnx" and args.output == "-":
        raise UsageError("-o -: an ONNX model is a file; name it")
    onnx = str(Path(args.file).with_suffix(".onnx")) if args.format == "onnx" else None
    out: str | None = args.output or onnx  # the file to write; None or "-": stdout
    if out is not None and out != "-":
        check_writable(out, "-o")
    if out is not None and args.format == "onnx":
        # torch's exporter prints its progress on stdout: on stderr, with specnet's messages
        progress = contextlib.redirect_stdout(sys.stderr)
        with progress if args.verbose else contextlib.nullcontext():
            fixed = export_onnx(spec, out, batch=args.batch, verbose=args.verbose)
        if fixed is not None and args.batch is None:
            print(
                f"specnet export: note: the model fixes its batch size: {out} is for a batch "
                f"of {fixed} only (--batch N for another)",
                file=sys.stderr,
            )
        print(f"wrote {out}", file=sys.stderr)
        return EXIT_OK
    text = python_source(spec)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, "utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from specnet._import.api import import_module, match, register_custom, schema_reference
    from specnet._import.command import arguments, build_module, shape, writable

    dims = shape(args.input)
    kwargs = arguments(args.arg or [])
    output = None if args.output in (None, "-") else Path(args.output)
    if output is not None:
        writable(output)
    module = build_module(args.target, kwargs)
    source = shlex.join(
        [args.target, *(f"--arg={a}" for a in args.arg or []), "--input", args.input]
    )
    imported = import_module(
        module,
        dims,
        dtype=args.dtype,
        allow_custom=args.allow_custom,
        schema=schema_reference(output or Path.cwd() / "spec.yaml"),
        source=source,
    )
    if output is None:
        sys.stdout.write(imported.text)
    else:
        try:
            output.write_text(imported.text, "utf-8")
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot write it: {exc.strerror}") from None
    where = "stdout" if output is None else str(output)
    if args.no_check:
        print(f"wrote {where} (not checked)", file=sys.stderr)
        return EXIT_OK
    for kind, cls in imported.custom.items():  # for this check; the file says how to register
        register_custom(kind, cls)
    result = match(module, output or imported.text, dims, dtype=args.dtype)
    print(f"wrote {where}: {result}", file=sys.stderr)
    return EXIT_OK if result.exact else SpecError.exit_code


def _load(args: argparse.Namespace, file: str) -> Any:
    """The spec ``file`` with ``--set`` (and ``--variant``) applied."""
    from specnet._front.overrides import Override, load_with_overrides

    if not Path(file).is_file():
        raise UsageError(f"{file}: no such file")
    sets: list[Override | str] = list(args.set or [])
    if args.variant is not None:
        sets.append(Override(("variant",), args.variant, f"variant={args.variant}"))
    return load_with_overrides(Path(file), sets)


def _train(args: argparse.Namespace) -> int:
    file = args.file
    if file is None:
        if args.resume is None:
            raise UsageError("give a spec FILE, or --resume DIR")
        file = str(Path(args.resume) / "spec.yaml")
    if args.resume is not None and args.out is not None and Path(args.out) != Path(args.resume):
        raise UsageError("--resume DIR continues the run in DIR; leave out --out")
    if args.nproc is not None and args.nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {args.nproc}")
    if args.out is not None and args.resume is None and not args.overwrite:
        _refuse_to_overwrite(Path(args.out))
    spec = _load(args, file)
    if args.logger:
        spec = _with_loggers(args, file, spec)
    from specnet._front.extras import require, train_needs

    require(train_needs(spec.train, progress=not args.no_progress))  # before any folder or data
    launching = args.nproc is not None and args.nproc > 1
    if spec.train is not None and not launching and os.environ.get("LOCAL_RANK", "0") == "0":
        from specnet._train.digits import prepare_in_background

        prepare_in_background(spec.train.data, spec.train.seed)  # while torch is imported
    from specnet._train.runs import summary_line, train_run

    command = args.launched_as or shlex.join(["specnet", *args.argv])
    if launching:
        from specnet._train.distributed import launch
        from specnet._train.runs import check_resumable

        if args.resume is not None:  # refused before starting the processes
            check_resumable(args.resume, args.nproc)
        launch(args.nproc, [*_without_nproc(args.argv), "--launched-as", command])
        return EXIT_OK

    result = train_run(
        spec,
        args.resume or args.out,
        resume=args.resume is not None,
        checkpoint_every=args.checkpoint_every,
        keep=args.keep,
        log_every=args.log_every,
        progress=not args.no_progress,
        command=command,
    )
    if result.trainer.rank == 0:
        seconds = time.perf_counter() - args.started
        scores = summary_line((f"test {k}", v) for k, v in (result.test or {}).items())
        print(f"{scores or 'no test split'}  wall time {seconds:.1f} s  run folder {result.folder}")
    return EXIT_OK


def _with_loggers(args: argparse.Namespace, file: str, spec: Any) -> Any:
    """The spec with ``--logger`` names added to its ``train.loggers`` (so the run folder's
    spec.yaml, and a resumed run, have them)."""
    from specnet._front.overrides import Override

    have = list(spec.train.loggers) if spec.train is not None else []
    added = [name for name in dict.fromkeys(args.logger) if name not in have]
    if not added:
        return spec
    value = [*have, *added]
    args.set = [*(args.set or []), Override(("train", "loggers"), value, f"train.loggers={value}")]
    return _load(args, file)


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` (or ``--nproc=N``, or an abbreviation of it)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name, eq, _ = arg.partition("=")
        if len(name) > len("--n") and "--nproc".startswith(name):
            skip = not eq
            continue
        out.append(arg)
    return out


def _refuse_to_overwrite(folder: Path) -> None:
    """A run folder with checkpoints is kept unless the command says to start over."""
    from specnet._train.checkpoint import latest_checkpoint

    found = latest_checkpoint(folder / "checkpoints")
    if found is not None:
        raise UsageError(
            f"{folder} holds a run (a checkpoint at step {found.step}): --resume {folder} "
            "continues it, --overwrite starts over in it"
        )


def _evaluate(args: argparse.Namespace) -> int:
    from specnet._front.extras import evaluate_needs, require
    from specnet._train.inference import evaluate_checkpoint
    from specnet._train.runs import summary_line

    spec = _load(args, args.file)
    require(evaluate_needs(spec.train))  # before the checkpoint or the data is read
    print(summary_line(evaluate_checkpoint(spec, args.checkpoint, args.split).items()))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from specnet._front.extras import predict_needs, require
    from specnet._train.inference import predict_file

    spec = _load(args, args.file)
    require(predict_needs())  # before the checkpoint is read
    shape = predict_file(
        spec, args.checkpoint, args.input, args.output, preprocess=not args.no_preprocess
    )
    print(f"wrote {args.output}: {shape}", file=sys.stderr)
    return EXIT_OK


def _count(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum`` (else a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _version() -> str:
    from specnet import __version__

    return __version__


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="specnet",
        description="Declarative PyTorch networks: validate, build and train YAML/JSON specs.",
    )
    p.add_argument("--version", action="version", version=f"specnet {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    variant = argparse.ArgumentParser(add_help=False)
    variant.add_argument(
        "--variant",
        metavar="NAME",
        help="one of the spec's variants (validate: default every variant in turn)",
    )
    v = sub.add_parser(
        "validate",
        parents=[variant],
        help="check spec files, shapes included; one line per error (file:line:col: path: message)",
    )
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    v.add_argument(
        "--format",
        choices=["text", "github", "json"],
        default="text",
        help="text: file:line:col: path: message (default); github: GitHub Actions "
        "annotations; json: one document on stdout, for tools",
    )
    v.add_argument(
        "--build",
        action="store_true",
        help="also build each model on the meta device with the installed torch (imports torch)",
    )
    v.set_defaults(run=_validate)

    s = sub.add_parser("schema", help="write the JSON Schema that editors and check-jsonschema use")
    s.add_argument(
        "-o",
        "--output",
        default="schemas/specnet.schema.json",
        help="where to write ('-' for stdout)",
    )
    s.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    s.add_argument("--print", action="store_true", help="write the schema to stdout")
    s.add_argument(
        "--path",
        action="store_true",
        help="print the path of the schema file the installed specnet carries (for editors)",
    )
    s.set_defaults(run=_schema)

    c = sub.add_parser(
        "completion",
        help='print a shell completion script: eval "$(specnet completion bash)"',
    )
    c.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    c.set_defaults(run=_completion)

    m = sub.add_parser(
        "summary",
        parents=[variant],
        help="per-layer output shapes, parameters and multiply-accumulates",
    )
    m.add_argument("file", metavar="FILE")
    m.add_argument(
        "--draw",
        metavar="OUT",
        help="also draw the network (as specnet draw): net.svg, net.png or net.html",
    )
    m.set_defaults(run=_summary, spec_errors_to=sys.stdout)  # the report, as validate's

    d = sub.add_parser(
        "draw",
        parents=[variant],
        help="the network as a picture (Graphviz's dot lays it out): .svg, .html or .png",
    )
    d.add_argument("file", metavar="FILE")
    d.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="net.svg, net.png or net.html (self-contained: blocks fold, hover for details)",
    )
    d.set_defaults(run=_draw, spec_errors_to=sys.stdout)

    ls = sub.add_parser(
        "lsp",
        help="the language server for spec files (stdio): diagnostics, shapes, names",
    )
    ls.add_argument(
        "--stdio", action="store_true", help="talk over stdin and stdout (the only way; accepted)"
    )
    ls.set_defaults(run=_lsp)

    e = sub.add_parser(
        "export", parents=[variant], help="write the model as plain PyTorch source or ONNX"
    )
    e.add_argument("file", metavar="FILE")
    e.add_argument(
        "--format",
        choices=["python", "onnx"],
        help="default: onnx for -o NAME.onnx, python otherwise",
    )
    e.add_argument("-o", "--output", help="output file (python: default stdout; onnx: FILE.onnx)")
    e.add_argument(
        "--batch",
        type=_count(1),
        metavar="N",
        help="onnx: fix the batch size to N (default: dynamic, named 'batch' in the file)",
    )
    e.add_argument(
        "--verbose", action="store_true", help="onnx: show torch's exporter progress and warnings"
    )
    e.set_defaults(run=_export)  # stdout is the generated code: errors go to stderr

    im = sub.add_parser(
        "import",
        help="write a spec for a PyTorch model of your own Python code (MODULE:CALLABLE)",
        description="Trace MODULE:CALLABLE(**args) with torch.fx on an input of the given shape "
        "and write its spec; then build it, load the model's state_dict into it strictly and "
        "compare their outputs (unless --no-check).",
    )
    im.add_argument("target", metavar="MODULE:CALLABLE", help="e.g. torchvision.models:resnet50")
    im.add_argument(
        "--arg",
        action="append",
        metavar="NAME=VALUE",
        help="a keyword argument of CALLABLE (repeatable)",
    )
    im.add_argument(
        "--input", required=True, metavar="SHAPE", help="one sample's shape, e.g. 3,224,224"
    )
    im.add_argument("--dtype", default="float32", help="the input's dtype (default float32)")
    im.add_argument(
        "-o", "--output", metavar="FILE", help="where to write the spec (default stdout)"
    )
    im.add_argument(
        "--allow-custom",
        action="store_true",
        help="keep a submodule whose class is not registered and cannot be read as a custom type",
    )
    im.add_argument("--no-check", action="store_true", help="do not build and compare the spec")
    im.set_defaults(run=_import)

    sets = argparse.ArgumentParser(add_help=False, parents=[variant])
    sets.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="change the spec before validation, e.g. train.epochs=3 (repeatable)",
    )
    t = sub.add_parser(
        "train",
        parents=[sets],
        help="train a spec's model on its train.data into a run folder",
        description="Train into a run folder: spec.yaml, metrics.csv, steps.csv, curves.png, "
        "checkpoints/ and model.safetensors.",
    )
    t.add_argument(
        "file", metavar="FILE", nargs="?", help="the spec (default with --resume: DIR/spec.yaml)"
    )
    t.add_argument("--out", metavar="DIR", help="run folder (default runs/<spec name>-<timestamp>)")
    t.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint"
    )
    t.add_argument(
        "--checkpoint-every",
        type=_count(0),
        metavar="N",
        help="also checkpoint every N optimizer steps (0: only at epoch ends; default 200, "
        "or the resumed run's)",
    )
    t.add_argument(
        "--keep",
        type=_count(0),
        metavar="K",
        help="checkpoints kept, the newest (0: all; default 2, or the resumed run's)",
    )
    t.add_argument(
        "--log-every",
        type=_count(0),
        metavar="N",
        help="write the training loss to steps.csv every N optimizer steps (0: never; default "
        "50, or the resumed run's)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument(
        "--logger",
        action="append",
        choices=LOGGERS,
        help="also log to NAME (added to the spec's train.loggers): tensorboard writes event "
        "files into RUN_FOLDER/tensorboard",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in --out DIR even if it holds a run (its checkpoints are removed)",
    )
    t.add_argument("--launched-as", help=argparse.SUPPRESS)
    t.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train in N processes with DistributedDataParallel (runs torchrun --standalone "
        "--nproc-per-node N -m specnet train ...): one per GPU, or gloo on the CPU",
    )
    t.set_defaults(run=_train)

    ev = sub.add_parser(
        "evaluate", parents=[sets], help="loss and metrics of saved weights on the spec's data"
    )
    ev.add_argument("file", metavar="FILE")
    ev.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="a .safetensors file, a checkpoint, or a run folder",
    )
    ev.add_argument("--split", choices=["test", "val", "train"], default="test")
    ev.set_defaults(run=_evaluate)

    pr = sub.add_parser(
        "predict", parents=[sets], help="run saved weights on inputs from a .pt file"
    )
    pr.add_argument("file", metavar="FILE")
    pr.add_argument("--checkpoint", required=True, metavar="PATH")
    pr.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="a .pt file: a tensor [N, *input], or a mapping with one as 'x'",
    )
    pr.add_argument(
        "--output", required=True, metavar="FILE", help="where to torch.save the outputs"
    )
    pr.add_argument(
        "--no-preprocess",
        action="store_true",
        help="the inputs are normalised already: do not apply the data set's normalisation "
        "(the run folder's run.json records it)",
    )
    pr.set_defaults(run=_predict)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.started = started
    args.argv = argv
    try:
        if args.command in _NEEDS_TORCH or getattr(args, "build", False) is True:
            from specnet._front.extras import require_torch

            require_torch(
                f"specnet {args.command}" + (" --build" if args.command == "validate" else "")
            )
        with _spec_warnings():
            code: int = args.run(args)
    except SpecnetError as exc:
        code = exc.exit_code
        if isinstance(exc, SpecError):  # located lines: file:line:col: path: message
            _report(str(exc), getattr(args, "spec_errors_to", sys.stderr))
        else:
            _report(f"specnet {args.command}: {exc}", sys.stderr)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        _report(f"specnet {args.command}: interrupted", sys.stderr)
    if args.command == "train" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from specnet._train.distributed import end_process

        end_process(code)  # with the other processes of the run, its error reported
    if argv_given is None and args.command in _QUICK_EXIT and "torch" in sys.modules:
        # The command's files are written, synced and closed and its errors reported: the
        # interpreter's teardown of torch's modules (a second or more) would only delay the
        # shell. Only as the program: main([...]) called from Python returns.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


@contextlib.contextmanager
def _spec_warnings() -> Iterator[None]:
    """Print each spec warning once, as its located line, on stderr; others as Python does."""
    shown: set[str] = set()
    python = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *where: Any, **more: Any) -> None:
        if not issubclass(category, SpecWarning):
            python(message, category, *where, **more)
        elif str(message) not in shown:
            shown.add(str(message))
            _report(str(message), sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", SpecWarning)
        warnings.showwarning = show
        yield


def _report(text: str, stream: TextIO) -> None:
    """Print an error; under torchrun, every process of a machine meets the same one (they
    agree on verdicts), and the machine's first alone prints it."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(text, file=stream)
