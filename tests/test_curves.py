"""curves.png: drawn by the painter process, or in this process when the painter cannot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from specnet._train import curves
from specnet._train.curves import Painter, plot_curves

HISTORY = [
    {"epoch": 1, "step": 10, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.5, "lr": 0.1},
    {"epoch": 2, "step": 20, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.7, "lr": 0.1},
]


def _png(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_the_painter_draws_what_this_process_would(tmp_path: Path) -> None:
    painter = Painter()
    assert painter._process is not None  # a process of its own
    process = painter._process
    painter.draw(HISTORY, tmp_path / "painted.png")  # handed over: the painter draws
    painter.finish()  # waits for it
    assert process.returncode == 0
    plot_curves(HISTORY, tmp_path / "here.png")
    assert _png(tmp_path / "painted.png") == _png(tmp_path / "here.png") == (1000, 360)


def test_a_painter_that_cannot_start_draws_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    painter = Painter()
    assert painter._process is None
    painter.draw(HISTORY, tmp_path / "c.png")
    assert _png(tmp_path / "c.png") == (1000, 360)


def test_a_painter_that_fails_is_replaced_by_drawing_here_which_reports_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    painter = Painter()
    target = tmp_path / "missing" / "c.png"  # no such folder: the painter fails, then we do
    painter.draw(HISTORY, target)  # handed over; the painter's failure shows when waited for
    with pytest.raises(OSError):
        painter.finish()
    drawn: list[Path] = []
    monkeypatch.setattr(curves, "plot_curves", lambda history, path: drawn.append(Path(path)))
    again = Painter()
    again.draw(HISTORY, tmp_path / "missing" / "d.png")
    again.finish()
    assert drawn == [tmp_path / "missing" / "d.png"]


def test_closing_a_painter_that_is_drawing_waits_for_the_curves(tmp_path: Path) -> None:
    painter = Painter()
    painter.draw(HISTORY, tmp_path / "c.png")
    painter.close()  # a run that stops after its curves were due (a non-finite loss)
    assert _png(tmp_path / "c.png") == (1000, 360)


def test_a_painter_never_asked_to_draw_exits_when_closed() -> None:
    painter = Painter()
    process = painter._process
    assert process is not None
    painter.close()
    assert process.returncode == 0 and painter._process is None
    painter.close()  # again: nothing to do


def test_curves_of_a_run_evaluated_on_its_test_split_show_the_test_columns(tmp_path: Path) -> None:
    rows = [{k.replace("val_", "test_"): v for k, v in row.items()} for row in HISTORY]
    plot_curves(rows, tmp_path / "c.png")  # test_loss with the losses, test_accuracy a panel
    assert _png(tmp_path / "c.png") == (1000, 360)
