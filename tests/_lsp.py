"""A small synchronous Language Server Protocol client for tests.

It speaks JSON-RPC with ``Content-Length`` framing to a server started as a subprocess
(here yaml-language-server over ``--stdio``). A reader thread parses everything the server
writes; requests from the server (``workspace/configuration`` and friends) are answered from
that thread, responses and ``textDocument/publishDiagnostics`` are handed to the test thread.
Every wait is bounded: a server that hangs fails the test with what it wrote to stderr.

Each :meth:`LspClient.diagnostics` / :meth:`LspClient.completion` call opens a document under
a fresh URI and closes it afterwards, so results never mix between calls.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["LspClient", "LspError", "yaml_settings"]

DEFAULT_TIMEOUT = 30.0

JsonObject = dict[str, Any]


class LspError(RuntimeError):
    """The server failed, answered with an error, exited or did not answer in time."""


def yaml_settings(schemas: Mapping[str, str | Sequence[str]] | None = None) -> JsonObject:
    """Workspace settings for yaml-language-server, as an editor would send them.

    ``schemas`` maps a schema URI to file globs; documents may instead name their schema in a
    ``# yaml-language-server: $schema=...`` modeline. The schema store is switched off: it
    would download a catalogue from the internet.
    """
    return {
        "yaml": {
            "validate": True,
            "completion": True,
            "hover": True,
            "schemas": dict(schemas or {}),
            "schemaStore": {"enable": False},
            "format": {"enable": False},
        },
        "http": {"proxy": "", "proxyStrictSSL": False},
        "[yaml]": {},
        "editor": {},
    }


class LspClient:
    """One language server process, driven synchronously.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        root: Path,
        settings: JsonObject | None,
        timeout: float = DEFAULT_TIMEOUT,
        language_id: str = "yaml",
    ) -> None:
        self.command = list(command)
        self.root = root.resolve()
        self.settings = settings
        self.timeout = timeout
        self.language_id = language_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._doc_ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._responses: dict[int, queue.Queue[JsonObject]] = {}
        self._responses_lock = threading.Lock()
        self._diagnostics: queue.Queue[JsonObject] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self._reader_error: BaseException | None = None
        self._configured = threading.Event()
        self._eof = threading.Event()
        self.server_info: JsonObject = {}
        self.log: deque[str] = deque(maxlen=200)  # window/logMessage and showMessage texts

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> LspClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server, run the initialize handshake and send the settings."""
        proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.root,
        )
        self._proc = proc
        if proc.stdout is None or proc.stderr is None:  # never: both are pipes
            raise LspError("no pipes to the language server")
        threading.Thread(target=self._read_loop, args=(proc.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True).start()
        try:
            self._handshake()
        except BaseException:
            self.close()
            raise

    def _handshake(self) -> None:
        result = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": self.root.as_uri(),
                "workspaceFolders": [{"uri": self.root.as_uri(), "name": self.root.name}],
                "capabilities": {
                    "workspace": {"configuration": True, "didChangeConfiguration": {}},
                    "textDocument": {
                        "synchronization": {"didSave": False},
                        "publishDiagnostics": {"relatedInformation": True},
                        "completion": {
                            "completionItem": {
                                "snippetSupport": True,
                                "documentationFormat": ["markdown", "plaintext"],
                            },
                        },
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                    },
                },
            },
        )
        self.server_info = dict(result.get("serverInfo") or {}) if isinstance(result, dict) else {}
        self.notify("initialized", {})
        if self.settings is None:  # a server without settings (specnet lsp)
            return
        self.notify("workspace/didChangeConfiguration", {"settings": self.settings})
        # yaml-language-server pulls the settings with workspace/configuration when told they
        # changed; the reader thread answers. A round trip sent after that answer makes sure
        # the server has read it before the first document is opened.
        if not self._configured.wait(self.timeout):
            raise LspError(
                f"the language server did not ask for its settings (workspace/"
                f"configuration) within {self.timeout:g} s{self._stderr_tail()}"
            )
        self.request("$/specnet/ping", None, allow_error=True)

    def close(self) -> None:
        """Shut the server down politely, then for sure."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            if proc.poll() is None:
                self._request(proc, "shutdown", None, timeout=5.0, allow_error=True)
                self._send(proc, {"jsonrpc": "2.0", "method": "exit"})
                proc.wait(timeout=5.0)
        except (LspError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5.0)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    # -- the two things tests ask ----------------------------------------------------------

    def diagnostics(self, text: str, *, path: Path | None = None) -> list[JsonObject]:
        """Open ``text`` as a YAML document and return the diagnostics the server publishes.

        ``path`` places the document (it need not exist) so that a relative ``$schema=`` in
        its modeline resolves against it; by default it lies in the server's root folder.
        """
        return self.diagnostics_many([(text, path)])[0]

    def diagnostics_many(
        self, documents: Sequence[tuple[str, Path | None]]
    ) -> list[list[JsonObject]]:
        """Diagnostics for several ``(text, path)`` documents, opened together.

        The server waits a moment after each change before it validates; opening all the
        documents first pays that delay once instead of once per document.
        """
        uris = [self._fresh_uri(path) for _, path in documents]
        for uri, (text, _) in zip(uris, documents, strict=True):
            self._open(uri, text)
        try:
            found = self._wait_diagnostics(set(uris))
        finally:
            for uri in uris:
                self._close_document(uri)
        return [found[uri] for uri in uris]

    def completion(
        self, text: str, line: int, character: int, *, path: Path | None = None
    ) -> list[str]:
        """The labels the server offers at ``line``/``character``.

        Both are 0-based; ``character`` counts UTF-16 code units (string indices for ASCII).
        """
        return [
            str(item["label"]) for item in self.completion_items(text, line, character, path=path)
        ]

    def completion_items(
        self, text: str, line: int, character: int, *, path: Path | None = None
    ) -> list[JsonObject]:
        """The full completion items offered at ``line``/``character`` (both 0-based)."""
        uri = self._fresh_uri(path)
        self._open(uri, text)
        try:
            result = self.request(
                "textDocument/completion",
                {
                    "textDocument": {"uri": uri},
                    "position": {"line": line, "character": character},
                    "context": {"triggerKind": 1},
                },
            )
        finally:
            self._close_document(uri)
        if result is None:
            return []
        items = result["items"] if isinstance(result, dict) else result
        return [dict(item) for item in items]

    def hover(self, text: str, line: int, character: int, *, path: Path | None = None) -> str:
        """The hover text (markdown) the server shows at ``line``/``character`` (0-based)."""
        uri = self._fresh_uri(path)
        self._open(uri, text)
        try:
            result = self.request(
                "textDocument/hover",
                {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
            )
        finally:
            self._close_document(uri)
        return str((result or {}).get("contents", {}).get("value", ""))

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._running().pid

    # -- documents kept open ------------------------------------------------------------

    def open_document(self, text: str, *, path: Path | None = None) -> str:
        """Open ``text`` (version 1) and return its URI; it stays open until closed."""
        uri = self._fresh_uri(path)
        self._open(uri, text)
        return uri

    def change_document(self, uri: str, text: str, version: int) -> None:
        """Replace the whole text of an open document."""
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": text}],
            },
        )

    def close_document(self, uri: str) -> None:
        self._close_document(uri)

    def published(self, uri: str, *, version: int | None = None) -> JsonObject:
        """The next ``publishDiagnostics`` for ``uri`` (for its ``version``, if given); others
        are dropped."""
        return self.published_until(uri, version)[-1]

    def published_until(self, uri: str, version: int | None = None) -> list[JsonObject]:
        """Every ``publishDiagnostics`` for ``uri`` up to the one for ``version`` (or the next
        one), in the order they came."""
        seen: list[JsonObject] = []
        while True:
            params = self._get(self._diagnostics, self.timeout, f"diagnostics for {uri}")
            if params.get("uri") != uri:
                continue
            seen.append(params)
            if version is None or params.get("version") == version:
                return seen

    def published_now(self, uri: str) -> list[JsonObject]:
        """The ``publishDiagnostics`` for ``uri`` that have come and not been read (no wait)."""
        seen: list[JsonObject] = []
        while True:
            try:
                params = self._diagnostics.get_nowait()
            except queue.Empty:
                return seen
            if params.get("uri") == uri:
                seen.append(params)

    # -- JSON-RPC ------------------------------------------------------------------------

    def request(self, method: str, params: Any, *, allow_error: bool = False) -> Any:
        """Send a request and wait for its result."""
        return self._request(
            self._running(), method, params, timeout=self.timeout, allow_error=allow_error
        )

    def notify(self, method: str, params: Any) -> None:
        """Send a notification."""
        self._send(self._running(), {"jsonrpc": "2.0", "method": method, "params": params})

    def _request(
        self,
        proc: subprocess.Popen[bytes],
        method: str,
        params: Any,
        *,
        timeout: float,
        allow_error: bool,
    ) -> Any:
        msg_id = next(self._ids)
        box: queue.Queue[JsonObject] = queue.Queue(maxsize=1)
        with self._responses_lock:
            self._responses[msg_id] = box
        try:
            self._send(proc, {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
            response = self._get(box, timeout, f"response to {method!r}")
        finally:
            with self._responses_lock:
                self._responses.pop(msg_id, None)
        if "error" in response:
            if allow_error:
                return None
            raise LspError(f"{method} failed: {response['error']}{self._stderr_tail()}")
        return response.get("result")

    def _send(self, proc: subprocess.Popen[bytes], message: JsonObject) -> None:
        body = json.dumps(message).encode("utf-8")
        header = f"Content-Length: {len(body)}\r\n\r\n".encode("ascii")
        stdin = proc.stdin
        if stdin is None or proc.poll() is not None:
            raise LspError(f"the language server has exited{self._stderr_tail()}")
        with self._write_lock:
            try:
                stdin.write(header + body)
                stdin.flush()
            except OSError as exc:
                raise LspError(
                    f"cannot write to the language server: {exc}{self._stderr_tail()}"
                ) from exc

    def _get(self, box: queue.Queue[JsonObject], timeout: float, what: str) -> JsonObject:
        """The next item in ``box``; fails after ``timeout`` s, or soon after the server ends."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return box.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                pass
            if self._eof.is_set() and box.empty():
                proc = self._proc
                code = proc.poll() if proc is not None else None
                reason = (
                    f"stopped reading: {self._reader_error!r}"
                    if self._reader_error
                    else (f"exited with code {code}" if code is not None else "closed its output")
                )
                raise LspError(f"no {what}: the language server {reason}{self._stderr_tail()}")
            if time.monotonic() >= deadline:
                raise LspError(
                    f"no {what} from the language server within {timeout:g} s{self._stderr_tail()}"
                )

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise LspError("the language server is not running (call start() first)")
        return self._proc

    # -- documents -----------------------------------------------------------------------

    def _fresh_uri(self, path: Path | None) -> str:
        n = next(self._doc_ids)
        if path is None:
            path = self.root / f"untitled-{n}.yaml"
        # The same file may be opened many times; a query string keeps each URI unique while
        # the path (and so a relative $schema) stays the same.
        return f"{path.resolve().as_uri()}?n={n}"

    def _open(self, uri: str, text: str) -> None:
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": self.language_id,
                    "version": 1,
                    "text": text,
                }
            },
        )

    def _close_document(self, uri: str) -> None:
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def _wait_diagnostics(self, uris: set[str]) -> dict[str, list[JsonObject]]:
        # Diagnostics for other URIs (the empty list sent when a document is closed) are
        # dropped: every document has its own URI, opened once.
        found: dict[str, list[JsonObject]] = {}
        while len(found) < len(uris):
            missing = sorted(uris - found.keys())
            what = f"diagnostics for {missing[0]}" + (
                f" and {len(missing) - 1} more documents" if len(missing) > 1 else ""
            )
            params = self._get(self._diagnostics, self.timeout, what)
            uri = params.get("uri")
            if uri in uris and uri not in found:
                found[uri] = [dict(d) for d in params.get("diagnostics", [])]
        return found

    # -- reader thread -------------------------------------------------------------------

    def _read_loop(self, stream: IO[bytes]) -> None:
        try:
            while True:
                message = _read_message(stream)
                if message is None:
                    return
                self._dispatch(message)
        except BaseException as exc:  # reported by the wait that is now cut short
            self._reader_error = exc
        finally:
            self._eof.set()

    def _dispatch(self, message: JsonObject) -> None:
        method = message.get("method")
        if method is None:  # a response to one of our requests
            with self._responses_lock:
                box = self._responses.get(message.get("id", -1))
            if box is not None:
                box.put(message)
            return
        if "id" in message:  # a request from the server
            proc = self._proc
            if proc is not None:
                result = self._answer(method, message.get("params"))
                self._send(proc, {"jsonrpc": "2.0", "id": message["id"], "result": result})
                if method == "workspace/configuration":
                    self._configured.set()
            return
        params = message.get("params") or {}
        if method == "textDocument/publishDiagnostics":
            self._diagnostics.put(params)
        elif method in ("window/logMessage", "window/showMessage"):
            self.log.append(str(params.get("message", "")))

    def _answer(self, method: str, params: Any) -> Any:
        if method == "workspace/configuration":
            items = params.get("items", []) if isinstance(params, dict) else []
            return [self._section(item.get("section")) for item in items]
        # client/registerCapability, window/workDoneProgress/create, ...: acknowledge.
        return None

    def _section(self, section: str | None) -> Any:
        if not section:
            return self.settings
        value: Any = self.settings
        for part in section.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def _drain(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def _stderr_tail(self) -> str:
        lines = list(self._stderr)[-20:]
        return "\nserver stderr:\n" + "\n".join(lines) if lines else ""


def _read_message(stream: IO[bytes]) -> JsonObject | None:
    """One framed JSON-RPC message, or None at the end of the stream."""
    length: int | None = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise LspError("a message from the language server has no Content-Length header")
    body = stream.read(length)
    if len(body) < length:
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise LspError(f"unexpected JSON-RPC message: {message!r}")
    return message
