"""The worker's end of a program's channel: a Unix socket serving JSON-line requests.

One handler answers every request of every connection (rank 0 of a ``torchrun`` may open
it again after a restart), one request at a time: the handler is the trial's state and the
pruner it calls is not made for concurrent use.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adamtune.sdk import protocol

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ChannelServer:
    """Listens at ``path`` (a fresh private directory) until :meth:`close`."""

    def __init__(self, handler: Handler):
        self._handler = handler
        self._lock = threading.Lock()
        # Unix socket paths are limited to ~100 bytes: a short directory under /tmp.
        self._dir = Path(tempfile.mkdtemp(prefix="adamtune-"))
        self.path = str(self._dir / "trial.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(4)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="program-channel", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = protocol.decode(line)
        except ValueError as exc:
            return protocol.reply("stop", f"unreadable message from the program: {exc}")
        with self._lock:
            try:
                return self._handler(message)
            except Exception as exc:  # a bad report must end the trial, not the worker
                log.warning("program channel: %r failed: %r", message, exc)
                return protocol.reply("stop", f"the worker could not handle {message!r}: {exc}")

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while not self._closed.is_set():
                try:
                    line = reader.readline(protocol.MAX_LINE)
                except OSError:
                    return
                if not line:
                    return
                try:
                    conn.sendall(protocol.encode(self._answer(line)))
                except OSError:
                    return

    def close(self) -> None:
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)
