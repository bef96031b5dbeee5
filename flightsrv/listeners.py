"""The runtime's listening addresses, checked before anything starts, so a busy port is one
line naming the flag that moves it rather than a gRPC or socket traceback."""

from __future__ import annotations

import errno
import socket


class ListenerError(Exception):
    """An address the runtime should listen on cannot be bound."""

    def __init__(self, flag: str, address: tuple[str, int], reason: str) -> None:
        self.flag = flag
        self.address = address
        host, port = address
        super().__init__(
            f"cannot listen on {host}:{port} ({reason}); choose another address with "
            f"{flag} HOST:PORT"
        )


def check_bindable(address: tuple[str, int], flag: str) -> None:
    """Bind ``address`` and release it at once, as a server would bind it (``SO_REUSEADDR``).

    gRPC reports a busy port only as "Server did not start properly" after writing its own
    log lines to stderr, hence this check before the Flight server is built.

    Raises:
        ListenerError: the address is in use, not local, or not allowed.
    """
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenerError(flag, address, e.strerror or str(e)) from e
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as e:
            reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise ListenerError(flag, address, reason or str(e)) from e
