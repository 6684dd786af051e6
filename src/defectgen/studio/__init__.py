"""`defectgen studio`: a local web page to paint a mask, generate defects in it, keep the good ones.

`serve` binds the socket (127.0.0.1 by default), prints the URL with a fresh random token and
runs the Starlette app (`studio.app`) under uvicorn until interrupted.
"""

from __future__ import annotations

import errno
import secrets
import socket
from pathlib import Path

from defectgen.errors import ConfigError
from defectgen.studio.app import create_app
from defectgen.studio.session import StudioSession
from defectgen.studio_config import StudioConfig

__all__ = ["StudioConfig", "StudioSession", "create_app", "serve"]


def serve(session: StudioSession, config: StudioConfig | None = None, announce=print) -> None:
    """Serve `session` on `config.host`:`config.port` until Ctrl-C; `announce(url)` is told the
    address with its token."""
    import uvicorn

    config = config or StudioConfig()
    config.validate()
    host, port = config.host, config.port
    token = secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if isinstance(err, socket.gaierror) or err.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"cannot listen on {host} ({err.strerror}): not an address of this machine; pass another "
                "--host (127.0.0.1 for this machine only)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); pass another --port") from None
    sock.listen(64)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    announce(f"http://{shown}:{bound}/?token={token}")
    everywhere = host in ("0.0.0.0", "::", "")
    allowed = ["*"] if everywhere else sorted({host, shown, "localhost", "127.0.0.1", "[::1]"})
    server = uvicorn.Server(uvicorn.Config(create_app(session, token, allowed), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        session.close()
        sock.close()


def default_out(checkpoint: Path) -> Path:
    """Where kept images go when --out is not given: beside the run folder."""
    return Path(checkpoint).resolve().parent.parent / "studio"
