"""Start a dashboard server for a browser benchmark: a free port, and wait until it serves."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, env: dict, log, *, seconds: float = 120.0):
    """Run ``command`` (a server on ``port``); return ``(process, url)`` once it serves.

    Readiness is polled on a static file, since every GET of the page starts a kernel.
    """
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "voila/static/voila.js", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.25)
    server.terminate()
    raise RuntimeError(f"the server did not start within {seconds:.0f} s: {' '.join(command)}")
