"""The ``specnet`` command: a thin layer over the library.

Importing this module is cheap (no torch); each command imports what it needs.
Exit codes: 0 success, 1 the spec (or run) is invalid, 2 usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


def _validate(args: argparse.Namespace) -> int:
    from specnet._api import check
    from specnet._front.errors import SpecError

    status = EXIT_OK
    bad = 0
    for name in args.files:
        if not Path(name).is_file():
            print(f"{name}: no such file", file=sys.stderr)
            status = EXIT_USAGE
            bad += 1
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
    from specnet._front.schema import schema_text

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
    from specnet._api import summary
    from specnet._front.errors import SpecError

    try:
        print(summary(Path(args.file)))
    except SpecError as exc:
        print(exc)
        return EXIT_INVALID
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from specnet._api import load
    from specnet._build.export import export_onnx, python_source
    from specnet._front.errors import SpecError

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


def _load(args: argparse.Namespace, file: str) -> Any:
    """The spec ``file`` with ``--set`` applied; raises what _run_command reports."""
    from specnet._front.overrides import load_with_overrides

    if not Path(file).is_file():
        raise _Usage(f"{file}: no such file")
    return load_with_overrides(Path(file), args.set or [])


class _Usage(Exception):
    """A usage error: exit code 2."""


def _run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a training command, turning its errors into messages and exit codes."""
    from specnet._front.errors import SpecError
    from specnet._front.overrides import OverrideError
    from specnet._train.checkpoint import CheckpointError

    # Under torchrun every process meets the same error; the first alone reports it.
    quiet = int(os.environ.get("RANK", "0")) != 0
    try:
        return command(args)
    except SpecError as exc:
        if not quiet:
            print(exc, file=sys.stderr)
        return EXIT_INVALID
    except (_Usage, OverrideError) as exc:
        if not quiet:
            print(f"specnet {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CheckpointError, FloatingPointError, ValueError) as exc:
        if not quiet:
            print(f"specnet {args.command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        if not quiet:
            print(f"specnet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _train(args: argparse.Namespace) -> int:
    file = args.file
    if file is None:
        if args.resume is None:
            raise _Usage("give a spec FILE, or --resume DIR")
        file = str(Path(args.resume) / "spec.yaml")
    if args.resume is not None and args.out is not None and Path(args.out) != Path(args.resume):
        raise _Usage("--resume DIR continues the run in DIR; leave out --out")
    if args.out is not None and args.resume is None and not args.overwrite:
        _refuse_to_overwrite(Path(args.out))
    spec = _load(args, file)
    from specnet._train import distributed as _distributed
    from specnet._train.runs import default_run_dir, train_run
    from specnet._train.trainer import resolve_device

    if args.nproc is not None and args.nproc < 1:
        raise _Usage(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc is not None and args.nproc > 1:
        if _distributed.launched():
            raise _Usage("--nproc starts torchrun itself; leave it out under torchrun")
        folder = Path(args.resume or args.out or default_run_dir(spec.name or Path(file).stem))
        return _launch(args, folder)

    t = spec.train
    _distributed.setup(resolve_device(t.device if t is not None else "auto"))
    try:
        main = _distributed.rank() == 0
        if args.resume or args.out:
            folder = Path(args.resume or args.out)
        else:  # rank 0 names the folder for all
            name = default_run_dir(spec.name or Path(file).stem) if main else None
            folder = Path(_distributed.broadcast_object(name))
        result = train_run(
            spec,
            folder,
            resume=args.resume is not None,
            checkpoint_every=args.checkpoint_every,
            keep=args.keep,
            log_every=args.log_every,
            progress=not args.no_progress,
            command=args.launched_as or shlex.join(["specnet", *args.argv]),
        )
    finally:  # all together, so that none is stopped while another still writes
        with contextlib.suppress(RuntimeError):
            _distributed.barrier()
        _distributed.shutdown()
    if not main:
        return EXIT_OK
    seconds = time.perf_counter() - args.started
    scores = "  ".join(
        f"test {k} {100 * v:.2f}%" if "accuracy" in k else f"test {k} {v:.4g}"
        for k, v in (result.test or {}).items()
    )
    print(f"{scores or 'no test split'}  wall time {seconds:.1f} s  run folder {result.folder}")
    return EXIT_OK


def _refuse_to_overwrite(folder: Path) -> None:
    """A run folder with checkpoints is kept unless the command says to start over."""
    from specnet._train.checkpoint import latest_checkpoint

    found = latest_checkpoint(folder / "checkpoints")
    if found is not None:
        raise _Usage(
            f"{folder} holds a run (a checkpoint at step {found.step}): --resume {folder} "
            "continues it, --overwrite starts over in it"
        )


def _launch(args: argparse.Namespace, folder: Path) -> int:
    """``specnet train --nproc N``: the same command in N processes, through torchrun.

    torchrun's launcher runs in this process: it forwards signals to the N processes and
    stops them all when one fails; each reports its own errors.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from specnet._train.checkpoint import (
        CheckpointError,
        check_world_size,
        latest_checkpoint,
        load_state,
    )

    n = int(args.nproc)
    if args.resume is not None:  # refuse a different world size before starting N processes
        found = latest_checkpoint(folder / "checkpoints")
        if found is None:
            raise CheckpointError(f"nothing to resume: no checkpoint in {folder / 'checkpoints'}")
        check_world_size(found.state, load_state(found.state), n)
    command = ["--standalone", f"--nproc-per-node={n}", "-m", "specnet", "train"]
    if args.file is not None:
        command.append(args.file)
    command += ["--resume" if args.resume is not None else "--out", str(folder)]
    for item in args.set or []:
        command += ["--set", item]
    for option in ("checkpoint_every", "keep", "log_every"):
        value = getattr(args, option)
        if value is not None:
            command += [f"--{option.replace('_', '-')}", str(value)]
    if args.no_progress:
        command.append("--no-progress")
    if args.overwrite:
        command.append("--overwrite")
    command += ["--launched-as", shlex.join(["specnet", *args.argv])]  # for spec.yaml
    # torchrun would set 1 thread per process; share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    try:
        run(get_args_parser().parse_args(command))  # type: ignore[no-untyped-call]
    except SignalException as exc:  # the processes are stopped
        print(f"specnet train: stopped by {exc.sigval.name}", file=sys.stderr)
        return EXIT_INVALID
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        print(
            f"specnet train: {len(exc.failures)} of {n} processes failed (exit codes "
            f"{', '.join(map(str, codes))})",
            file=sys.stderr,
        )
        return EXIT_USAGE if codes == [EXIT_USAGE] else EXIT_INVALID
    return EXIT_OK


def _model_with_weights(args: argparse.Namespace) -> tuple[Any, Any]:
    from specnet._api import build
    from specnet._train.checkpoint import find_checkpoint, load_weights, model_hash
    from specnet._train.trainer import Trainer, resolve_device

    spec = _load(args, args.file)
    device = resolve_device(spec.train.device if spec.train is not None else "auto")
    model = build(spec, device=device)
    load_weights(find_checkpoint(args.checkpoint), model, model_hash(spec.data))
    return spec, Trainer.from_spec(spec, model=model, seed=None)


def _evaluate(args: argparse.Namespace) -> int:
    from specnet._train.data import check_fits, load_dataset
    from specnet._train.runs import summary_lines

    spec, trainer = _model_with_weights(args)
    t = spec.train
    if t is None or t.data is None:
        raise _Usage(f"{args.file} has no train.data to evaluate on")
    data = load_dataset(t.data, args.split, input=spec.input, seed=t.seed, source=spec.source)
    if data is None:
        raise _Usage(f"{t.data.type} has no {args.split} split")
    check_fits(data, f"{t.data.type} ({args.split} split)", spec.inputs, spec.source)
    print(summary_lines(trainer.evaluate(data).items()))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    import pickle

    import torch

    from specnet._train.checkpoint import atomic_write

    spec, trainer = _model_with_weights(args)
    try:
        loaded = torch.load(args.input, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise _Usage(f"cannot read --input {args.input}: {exc}") from None
    x = loaded.get("x") if isinstance(loaded, dict) else loaded
    want = spec.input
    if not isinstance(x, torch.Tensor):
        raise _Usage(f"--input {args.input}: expected a tensor, or a mapping with a tensor 'x'")
    if tuple(x.shape[1:]) != want.shape or x.dtype != getattr(torch, want.dtype):
        raise _Usage(
            f"--input {args.input}: samples of shape {list(x.shape[1:])} "
            f"({str(x.dtype).removeprefix('torch.')}); the spec's input is "
            f"{list(want.shape)} ({want.dtype})"
        )
    preds = trainer.predict(x)
    atomic_write(args.output, lambda tmp: torch.save(preds, tmp))
    print(f"wrote {args.output}: {list(preds.shape)}", file=sys.stderr)
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

    sets = argparse.ArgumentParser(add_help=False)
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
        type=int,
        metavar="N",
        help="also checkpoint every N optimizer steps (0: only at epoch ends; default 200, "
        "or the resumed run's)",
    )
    t.add_argument("--keep", type=int, metavar="K", help="checkpoints kept (default 2)")
    t.add_argument(
        "--log-every",
        type=int,
        metavar="N",
        help="write the training loss to steps.csv every N optimizer steps (default 50)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    t.set_defaults(run=lambda a: _run_command(_train, a))

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
    ev.add_argument("--split", choices=["test", "train"], default="test")
    ev.set_defaults(run=lambda a: _run_command(_evaluate, a))

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
    pr.set_defaults(run=lambda a: _run_command(_predict, a))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.started = started
    args.argv = argv
    code: int = args.run(args)
    if args.command == "train" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _end_worker(code)
    return code


def _end_worker(code: int) -> None:
    """End a process of a torchrun job now that it has left the process group.

    Its files are written and closed. Exiting at once, rather than through the interpreter's
    teardown, makes the processes end together: torchrun stops the others as soon as one
    fails, and gloo's threads can abort a process during that teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
