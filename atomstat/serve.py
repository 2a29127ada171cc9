"""``atomstat dashboard [DATA_DIR]``: serve the Voila dashboard of a clone.

The server is run as ``make app`` runs it: every page view starts a kernel,
so kernels idle for ``--cull-idle-timeout`` seconds are stopped, even with
their browser tab still open. The data folder reaches the page through the
``ATOMSTAT_DATA_DIR`` environment variable.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["add_parser", "dashboard_command", "notebook_path"]

log = logging.getLogger("atomstat")


def notebook_path() -> Path:
    """The dashboard notebook, ``app/dashboard.ipynb`` beside the ``atomstat`` package."""
    return Path(__file__).resolve().parent.parent / "app" / "dashboard.ipynb"


def dashboard_command(
    notebook: Path, *, host: str = "127.0.0.1", port: int = 8866, cull_idle_timeout: int = 1800,
    cull_interval: int = 60,
) -> list[str]:  # fmt: skip
    """The ``voila`` command line, with the culling flags of the Makefile."""
    return [
        sys.executable, "-m", "voila", str(notebook), "--no-browser",
        f"--Voila.ip={host}", f"--port={port}",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
        f"--MappingKernelManager.cull_interval={cull_interval}",
        "--MappingKernelManager.cull_connected=True",
    ]  # fmt: skip


def _run(args) -> int:
    notebook = notebook_path()
    if not notebook.is_file():
        log.error("%s not found: the dashboard runs from a clone of atomstat", notebook)
        return 2
    from .cli import output_folder

    data_dir = output_folder(Path(args.data_dir).expanduser().resolve(), "DATA_DIR")
    if data_dir is None:
        return 1
    command = dashboard_command(
        notebook, host=args.host, port=args.port, cull_idle_timeout=args.cull_idle_timeout,
        cull_interval=args.cull_interval,
    )  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir)}
    if args.dry_run:
        sys.stdout.write(f"ATOMSTAT_DATA_DIR={shlex.quote(str(data_dir))} {shlex.join(command)}\n")
        return 0
    log.info("dashboard: http://%s:%s/  data: %s  (Ctrl-C stops)", args.host, args.port, data_dir)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def add_parser(sub) -> None:
    """Add the ``dashboard`` subcommand to the ``atomstat`` parser."""
    from .cli import int_range

    d = sub.add_parser("dashboard", help="serve the browser dashboard (Voila)")
    d.add_argument(
        "data_dir",
        nargs="?",
        default=".",
        metavar="DATA_DIR",
        help="folder the dashboard may open files from and export to (default: .)",
    )
    d.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to share the link")
    d.add_argument("--port", type=int_range(1, 65535), default=8866, help="1-65535 (default 8866)")
    d.add_argument(
        "--cull-idle-timeout",
        type=int_range(0),
        default=1800,
        help="stop kernels idle this long, in s (default 1800)",
    )
    d.add_argument(
        "--cull-interval", type=int_range(1), default=60, help="check every N s (default 60)"
    )
    d.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    d.set_defaults(func=_run)  # fmt: skip
