"""Running the viewer: the ``serve`` extra's packages, a listening socket, uvicorn."""

from __future__ import annotations

import importlib.util
import ipaddress
import socket

from ..errors import MissingDependency

__all__ = ["LOOPBACK_NAMES", "is_loopback", "listen", "require_server", "serve"]

#: ``Host`` headers a loopback server answers (any other may be a DNS-rebinding page).
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]

_PACKAGES = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}


def require_server() -> None:
    """Raise :class:`~camloc.errors.MissingDependency` naming the pip command when a package of the extra is absent."""
    missing = []
    for module, package in _PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken one
            found = False
        if not found:
            missing.append(package)
    if missing:
        raise MissingDependency(
            f"camloc serve needs {', '.join(missing)}: pip install 'camloc[serve]' (or pip install {' '.join(missing)})"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one) and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # answers go out at once (accepted connections inherit it), not after the client's delayed ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(128)
    return sock


def serve(app, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve ``app`` on ``sock`` until interrupted (one process; the model runs in its own thread)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
