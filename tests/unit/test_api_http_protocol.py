"""The API's uvicorn protocol turns Nagle's algorithm off where uvicorn's own bind leaves it
on (``--workers N``: a listening socket made with ``proto`` 0)."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.server import ServerState

from api.http_protocol import NoDelayHTTPProtocol


async def _app(scope: object, receive: object, send: object) -> None:  # never called
    raise AssertionError("no request is sent in this test")


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_accepted_connections_get_tcp_nodelay() -> None:
    config = uvicorn.Config(app=_app, http=NoDelayHTTPProtocol, log_level="warning")
    config.load()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:  # as bind_socket does
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            assert accepted.proto == 0 and _nodelay(accepted) == 0  # what asyncio skips

            async def serve() -> int:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.connect_accepted_socket(
                    lambda: NoDelayHTTPProtocol(  # type: ignore[no-any-return]
                        config=config, server_state=ServerState(), app_state={}
                    ),
                    accepted,
                )
                value = _nodelay(accepted)
                transport.close()
                await asyncio.sleep(0)
                return value

            assert asyncio.run(serve()) == 1
            client.close()
