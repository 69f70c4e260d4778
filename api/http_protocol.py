"""uvicorn's HTTP protocol, with Nagle's algorithm off on every connection it accepts.

With ``adamtune api --workers N`` (N > 1) uvicorn binds the listening socket itself
(``Config.bind_socket``) with ``proto`` 0; accepted connections inherit it, and asyncio
sets ``TCP_NODELAY`` only on sockets that report ``IPPROTO_TCP``. A response written as
two segments (headers, then body) then waits for the client's delayed ACK: about 40 ms on
every keep-alive request on Linux (uvicorn issue #3149, open in 0.54). This protocol sets
``TCP_NODELAY`` itself; with one process, where asyncio already did, it changes nothing.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

NAME = "api.http_protocol:NoDelayHTTPProtocol"  # as uvicorn's ``http`` option


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol (httptools where installed, else h11) with TCP_NODELAY."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        set_nodelay(transport)
        super().connection_made(transport)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on ``transport``'s TCP socket (nothing for others)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # closed by the peer already: nothing to speed up
            pass
