"""Parameter counts for hovers, from a worker process that has torch.

The server never imports torch (it starts in a fraction of a second and runs where only
``specnet-core`` is installed). Where torch is installed, a worker process
(``python -P -m specnet._build.counts``) builds each valid text on the meta device, as
``specnet summary`` does, and sends back every module's parameter count; hovers show them
once they have arrived for the text on screen.

The server never waits for the worker: a writer thread hands it the newest text of each
document (older ones not yet sent are dropped), a reader thread files the answers. A worker
that dies is started again at the next request, at most ``MAX_STARTS`` times.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import subprocess
import sys
import threading
from typing import IO

__all__ = ["MAX_STARTS", "Counts"]

MAX_STARTS = 3
"""Worker processes started in a session before counting is given up (torch each time)."""


class Counts:
    def __init__(self) -> None:
        self.available = importlib.util.find_spec("torch") is not None
        self._proc: subprocess.Popen[str] | None = None
        self._starts = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: dict[str, tuple[int, str]] = {}
        """uri -> (ticket, text): the newest request of each document not yet sent."""
        self._tickets = itertools.count(1)
        self._asked: dict[str, tuple[int, int | None]] = {}
        """uri -> (ticket, document version) of its newest request."""
        self._results: dict[str, tuple[int, dict[str, int]]] = {}
        """uri -> (ticket, counts) of the newest answer."""
        self._writer: threading.Thread | None = None
        self._closed = False

    def request(self, uri: str, version: int | None, text: str) -> None:
        """Ask for the counts of ``text``, the document's ``version``; returns at once."""
        if not self.available:
            return
        with self._lock:
            ticket = next(self._tickets)
            self._asked[uri] = (ticket, version)
            self._waiting[uri] = (ticket, text)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, daemon=True)
                self._writer.start()
            self._wake.notify()

    def _start(self) -> subprocess.Popen[str] | None:
        """A running worker (started if need be), or None when counting is given up."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        if self._starts >= MAX_STARTS:
            self.available = False
            return None
        self._starts += 1
        try:
            # -P: never the workspace's own modules first on sys.path (a torch.py there).
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "specnet._build.counts"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
            )
        except OSError:
            self.available = False
            return None
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()
        self._proc = proc
        return proc

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                uri = next(iter(self._waiting))
                ticket, text = self._waiting.pop(uri)
                proc = self._start()
            if proc is None:
                return
            stdin = proc.stdin
            assert stdin is not None
            try:  # outside the lock: the worker may take its time to read
                stdin.write(json.dumps({"uri": uri, "ticket": ticket, "text": text}) + "\n")
                stdin.flush()
            except (OSError, ValueError):
                continue  # it died; the next request starts another

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            try:
                answer = json.loads(line)
                uri, ticket = str(answer["uri"]), int(answer["ticket"])
                params = {str(k): int(v) for k, v in answer["params"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            with self._lock:
                if uri in self._asked:  # not for a document closed since
                    self._results[uri] = (ticket, params)

    def get(self, uri: str, version: int | None) -> dict[str, int] | None:
        """The counts of the document's ``version`` ({} until they arrive); None: no torch."""
        if not self.available:
            return None
        with self._lock:
            asked = self._asked.get(uri)
            found = self._results.get(uri)
        if asked is None or found is None or asked[1] != version or found[0] != asked[0]:
            return {}
        return found[1]

    def forget(self, uri: str) -> None:
        with self._lock:
            self._asked.pop(uri, None)
            self._waiting.pop(uri, None)
            self._results.pop(uri, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
            proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
