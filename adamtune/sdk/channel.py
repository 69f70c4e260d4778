"""The SDK's end of the worker's Unix socket: one JSON request, one JSON reply, in turn."""

from __future__ import annotations

import socket
from typing import Any

from adamtune.sdk import protocol


class WorkerLost(ConnectionError):
    """The worker that launched this program closed the channel: stop training."""


class Channel:
    """A blocking request/response connection to the worker at ``path``."""

    def __init__(self, path: str, timeout_s: float = 300.0):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise WorkerLost(
                f"cannot reach the adamtune worker at {path} ({exc}); run the script without "
                f"{protocol.PHASE} and {protocol.SOCKET} to train standalone"
            ) from exc
        self._reader = self._sock.makefile("rb")

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self._sock.sendall(protocol.encode(message))
            line = self._reader.readline(protocol.MAX_LINE)
        except OSError as exc:
            raise WorkerLost(f"lost the adamtune worker at {self.path}: {exc}") from exc
        if not line:
            raise WorkerLost(f"the adamtune worker at {self.path} closed the channel")
        answer = protocol.decode(line)
        if answer.get("action") not in protocol.ACTIONS:
            raise WorkerLost(f"unexpected reply from the worker: {answer!r}")
        return answer

    def close(self) -> None:
        self._reader.close()
        self._sock.close()
