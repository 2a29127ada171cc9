"""``atomstat dashboard [DATA_DIR]``: serve the Voila dashboard of a clone.

The server is :mod:`atomstat.serve_app` (Voila with atomstat's guards), run as
``make app`` runs it. Every page view starts a kernel: a tab's kernel is shut
down when the tab is closed or reloaded, or when no page has been connected
to it for ``--orphan-timeout`` seconds; kernels idle for
``--cull-idle-timeout`` seconds are stopped even with their tab still open.
The server listens on 127.0.0.1 unless ``--host`` says otherwise; elsewhere
it requires a token (``$ATOMSTAT_TOKEN``, or one it makes and prints) and
serves only Host headers that name this machine (``--allow-host``). The data
folder reaches the page through ``ATOMSTAT_DATA_DIR``.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = [
    "DEFAULT_DATA_DIR",
    "add_parser",
    "dashboard_command",
    "notebook_path",
    "upload_limit_bytes",
]

log = logging.getLogger("atomstat")

#: The data folder when none is given (as in the README and the Makefile).
DEFAULT_DATA_DIR = "~/atomstat-data"


def upload_limit_bytes() -> int:
    """The largest upload, bytes: ``$ATOMSTAT_UPLOAD_LIMIT_MB`` MiB (default 200).

    The server and the page's kernel both read it: the server sizes its
    websocket frames to it and the page refuses larger files.

    Raises
    ------
    ValueError
        If the variable is not a positive number.
    """
    text = os.environ.get("ATOMSTAT_UPLOAD_LIMIT_MB", "200")
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = float("nan")
    if not 0 < megabytes < 2**20:  # NaN fails too
        raise ValueError(f"ATOMSTAT_UPLOAD_LIMIT_MB must be a positive number of MiB, got {text!r}")
    return int(megabytes * 2**20)


def notebook_path() -> Path:
    """The dashboard notebook, ``app/dashboard.ipynb`` beside the ``atomstat`` package."""
    return Path(__file__).resolve().parent.parent / "app" / "dashboard.ipynb"


def dashboard_command(
    notebook: Path, *, host: str = "127.0.0.1", port: int = 8866, cull_idle_timeout: int = 1800,
    cull_interval: int = 60, orphan_timeout: int = 30, allowed_hosts: tuple[str, ...] = (),
) -> list[str]:  # fmt: skip
    """The server's command line (:mod:`atomstat.serve_app`), with the flags of the Makefile."""
    return [
        sys.executable, "-m", "atomstat.serve_app", str(notebook), "--no-browser",
        f"--Voila.ip={host}", f"--port={port}",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
        f"--MappingKernelManager.cull_interval={cull_interval}",
        "--MappingKernelManager.cull_connected=True",
        f"--AtomstatVoila.orphan_timeout={orphan_timeout}",
        *(f"--AtomstatVoila.allowed_hosts={host}" for host in allowed_hosts),
    ]  # fmt: skip


def _writable(folder: Path) -> bool:
    """Whether a file can be written in ``folder`` (permission bits do not stop root)."""
    probe = folder / f".atomstat-write-test-{os.getpid()}"
    try:
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError:
        return False
    return True


def _run(args) -> int:
    notebook = notebook_path()
    if not notebook.is_file():
        log.error("%s not found: the dashboard runs from a clone of atomstat", notebook)
        return 2
    from .cli import output_folder

    data_dir = output_folder(Path(args.data_dir).expanduser().resolve(), "DATA_DIR")
    if data_dir is None:
        return 1
    if not _writable(data_dir):
        log.warning(
            "DATA_DIR %s is read-only: the dashboard opens and analyses its files but cannot "
            "save labels, uploads or exports there", data_dir,
        )  # fmt: skip
    command = dashboard_command(
        notebook, host=args.host, port=args.port, cull_idle_timeout=args.cull_idle_timeout,
        cull_interval=args.cull_interval, orphan_timeout=args.orphan_timeout,
        allowed_hosts=tuple(args.allow_host),
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
        default=DEFAULT_DATA_DIR,
        metavar="DATA_DIR",
        help=f"folder the dashboard opens files from and exports to (default: {DEFAULT_DATA_DIR})",
    )
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only); 0.0.0.0 shares the "
        "link, with a token ($ATOMSTAT_TOKEN, or one made and printed)",
    )
    d.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name visitors use in the link (IP addresses, localhost and this machine's "
        "name are always served); repeat for several",
    )
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
    d.add_argument(
        "--orphan-timeout",
        type=int_range(0),
        default=30,
        help="stop kernels no page has been connected to this long, in s (default 30; 0: never)",
    )
    d.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    d.set_defaults(func=_run)  # fmt: skip
