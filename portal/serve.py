"""Running the portal: uvicorn, one process or several on one listening socket."""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

from portal.logs import log_config


def _tcp(sock: socket.socket) -> socket.socket:
    """The same listening socket, marked TCP: asyncio sets TCP_NODELAY only on accepted sockets
    whose protocol says TCP, and uvicorn's own socket for several workers says 0, so every response
    waited for the client's delayed ACK (40 ms a request instead of 1 ms)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    marked = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    marked.set_inheritable(True)
    return marked


def serve(host: str, port: int, workers: int, proxy_headers: bool, forwarded_allow_ips: str) -> None:
    config = uvicorn.Config(
        "portal.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_config=log_config(),
        server_header=False,
    )
    if workers > 1:
        Multiprocess(config, sockets=[_tcp(config.bind_socket())]).run()
    else:
        uvicorn.Server(config).run()
