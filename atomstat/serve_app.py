"""The dashboard's server: Voila with the guards that serving it to visitors needs.

``python -m atomstat.serve_app NOTEBOOK [voila options]`` runs it (``make app``
and ``atomstat dashboard`` do). It is plain Voila (every option of ``voila``
works) with these changes:

- The page sets the ``_xsrf`` cookie that Voila's shutdown beacon sends back
  when a tab is closed or reloaded. Plain Voila never sets it, so the beacon
  got a 403 and the kernel (about 1 GB) stayed until the idle cull
  (voila-dashboards/voila#1458).
- Kernels that no page has been connected to, or sent its heartbeat (every
  10 s while it is open), for ``orphan_timeout`` seconds are shut down (for
  ``first_connect_timeout`` seconds if no page ever connected): a crashed
  tab, a browser killed, or a GET without a browser leave no websocket and
  send no beacon.
- Kernel websockets must offer the ``v1.kernel.websocket.jupyter.org``
  subprotocol. With the legacy protocol, Voila's ``write_message`` read a
  binary reply as v1 and looped over a header count of about 2**60: memory
  grew without end and the server stopped answering, SIGTERM included.
- The Host header must name this machine (any IP address, ``localhost``, or a
  name in ``allowed_hosts``), so a page from another site cannot reach the
  server through DNS rebinding. Bound to anything but loopback, a token is
  required (one is made when none is given).
- The websocket frame limit is raised to the upload limit (Tornado's 10 MiB
  closed the connection without a word), and the page refuses larger files
  before reading them, with a message that gives the limit.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import sys
import time

import tornado.web
import tornado.websocket
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.ioloop import PeriodicCallback
from traitlets import Integer, List, Unicode
from voila.app import Voila, _kernel_id_regex
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler

from .serve import upload_limit_bytes

__all__ = ["AtomstatVoila", "host_allowed", "main", "v1_header"]

log = logging.getLogger("atomstat")

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
#: Room for the upload message's JSON beside the file's bytes.
FRAME_MARGIN = 2**20
#: How often an open page tells the server it is alive.
HEARTBEAT_SECONDS = 10


def host_allowed(host: str, allowed=()) -> bool:
    """Whether a request's Host header (``name[:port]``) may be served.

    IP addresses and local names always may: DNS rebinding needs a name that
    the attacker controls. Other names must be in ``allowed``.
    """
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8866
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return bool(name) and (name in LOCAL_NAMES or name in {a.lower().rstrip(".") for a in allowed})


def is_loopback(ip: str) -> bool:
    """Whether binding to ``ip`` keeps the server on this machine."""
    if ip in ("localhost", ""):
        return ip == "localhost"
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def v1_header(message: bytes) -> dict | None:
    """The header of a v1 kernel websocket message, or None if ``message`` is not one.

    The message starts with the number of parts, then their offsets, each an
    8-byte little-endian integer. Counts and offsets are checked against the
    message's length before anything is read.
    """
    if len(message) < 8:
        return None
    n = int.from_bytes(message[:8], "little")
    if not 3 <= n <= 1024 or len(message) < 8 * (n + 1):
        return None
    start = int.from_bytes(message[16:24], "little")
    stop = int.from_bytes(message[24:32], "little")
    if not 8 * (n + 1) <= start <= stop <= len(message):
        return None
    try:
        header = json.loads(message[start:stop])
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


class PageHandler(TornadoVoilaHandler):
    """The dashboard page: it sets the ``_xsrf`` cookie that the tab's shutdown beacon
    returns, and adds :data:`PAGE_SCRIPT` (upload limit, beacon on ``pagehide``)."""

    async def prepare(self):
        await super().prepare()
        self.xsrf_token  # noqa: B018 (the property sets the cookie)
        self._guard_written = False

    def write(self, chunk):
        """Write the page, with :data:`PAGE_SCRIPT` in its ``<head>``."""
        if not self._guard_written and isinstance(chunk, str) and "</head>" in chunk:
            script = PAGE_SCRIPT.replace("LIMIT", str(self.settings["atomstat_upload_limit"]))
            script = script.replace("HEARTBEAT_MS", str(HEARTBEAT_SECONDS * 1000))
            chunk = chunk.replace("</head>", f"<script>{script}</script></head>", 1)
            self._guard_written = True
        return super().write(chunk)


class KernelSocket(VoilaKernelWebsocketHandler):
    """Kernel websockets that speak the v1 protocol only."""

    async def get(self, *args, **kwargs):
        offered = self.request.headers.get("Sec-WebSocket-Protocol", "")
        if V1_PROTOCOL not in [p.strip() for p in offered.split(",")]:
            self.log.warning("refused a kernel websocket without the %s subprotocol", V1_PROTOCOL)
            self.set_status(400)
            self.finish(f"kernel websockets must offer the {V1_PROTOCOL} subprotocol")
            return
        await super().get(*args, **kwargs)

    def select_subprotocol(self, subprotocols):
        """Always v1 (the handshake without it was refused)."""
        return V1_PROTOCOL if V1_PROTOCOL in subprotocols else None

    def write_message(self, message, binary=False):
        """Send a kernel message, leaving out ``execute_input`` (as Voila does)."""
        if isinstance(message, bytes):
            header = v1_header(message)
        elif isinstance(message, dict):
            header = message.get("header")
        else:
            header = None
        if isinstance(header, dict) and header.get("msg_type") == "execute_input":
            return None
        return tornado.websocket.WebSocketHandler.write_message(self, message, binary)


class ShutdownHandler(APIHandler):
    """``POST /voila/api/shutdown/<id>``, the tab's beacon (``_xsrf`` checked): shut the
    kernel down. A kernel already gone answers 204 too: a reload sends two beacons."""

    @tornado.web.authenticated
    async def post(self, kernel_id):
        if kernel_id in self.kernel_manager:
            await ensure_async(self.kernel_manager.shutdown_kernel(kernel_id))
        self.set_status(204)
        self.finish()


class AliveHandler(APIHandler):
    """``GET /atomstat/api/kernels/<id>/alive``: an open page's heartbeat (204; 404 if gone)."""

    @tornado.web.authenticated
    def get(self, kernel_id):
        if kernel_id not in self.kernel_manager:
            raise tornado.web.HTTPError(404, "no such kernel")
        reaper = self.settings.get("atomstat_reaper")
        if reaper is not None:
            reaper.attended[kernel_id] = time.monotonic()
        self.set_status(204)
        self.finish()


class KernelCountHandler(APIHandler):
    """``GET /atomstat/api/kernels``: how many kernels run and how many have a page connected."""

    @tornado.web.authenticated
    def get(self):
        manager = self.kernel_manager
        models = [manager.kernel_model(k) for k in manager.list_kernel_ids()]
        connected = sum(m["connections"] > 0 for m in models)
        self.finish({"kernels": len(models), "connected": connected})


class ForbiddenHost(tornado.web.RequestHandler):
    """The answer to a request whose Host header names another site."""

    def prepare(self):
        log.warning("refused a request for Host %r", self.request.host)
        self.set_status(403)
        self.finish(
            f"Host {self.request.host!r} is not served here. Start the dashboard with "
            "--allow-host NAME to open it under that name."
        )


class GuardedApplication(tornado.web.Application):
    """A tornado application that serves only Host headers that name this machine."""

    def find_handler(self, request, **kwargs):
        if not host_allowed(request.host, self.settings.get("atomstat_allowed_hosts", ())):
            return self.get_handler_delegate(request, ForbiddenHost)
        return super().find_handler(request, **kwargs)


class OrphanReaper:
    """Shut down kernels no page is connected to, ``timeout`` seconds after their page left.

    The clock of a kernel starts when it is first seen neither connected nor
    busy, and restarts while it is either, and at each heartbeat of its page
    (:class:`AliveHandler`): the first render runs in the kernel (busy), and the
    page loads its scripts before it connects. A kernel that has never been
    connected waits ``first_timeout`` seconds instead: loading the page's
    scripts can stall its heartbeat (10 pages at once on 2 cores stalled one
    for over 30 s). A kernel's own messages do not count, since a dashboard may
    poll or stream without a page.
    """

    def __init__(self, manager, *, timeout: float, interval: float, first_timeout: float):
        self.manager, self.timeout, self.interval = manager, timeout, interval
        self.first_timeout = max(first_timeout, timeout)
        self.attended: dict[str, float] = {}  # kernel id -> last time connected, busy or alive
        self.connected: set[str] = set()  # kernels a page has been connected to

    def start(self) -> None:
        """Check every ``interval`` seconds on the running IO loop."""
        PeriodicCallback(self.reap, self.interval * 1000).start()

    async def reap(self, now: float | None = None) -> list[str]:
        """Shut down the orphaned kernels; return their ids."""
        now, gone = time.monotonic() if now is None else now, []
        running = set(self.manager.list_kernel_ids())
        for kernel_id in running:
            try:
                model = self.manager.kernel_model(kernel_id)
            except (KeyError, tornado.web.HTTPError):
                continue
            if model["connections"] > 0:
                self.connected.add(kernel_id)
            if model["connections"] > 0 or model["execution_state"] == "busy":
                self.attended[kernel_id] = now
                continue
            alone = now - self.attended.setdefault(kernel_id, now)
            if alone > (self.timeout if kernel_id in self.connected else self.first_timeout):
                log.info("kernel %s: no page connected for %.0f s, shut down", kernel_id, alone)
                await ensure_async(self.manager.shutdown_kernel(kernel_id))
                gone.append(kernel_id)
        running -= set(gone)
        for kernel_id in set(self.attended) - running:
            del self.attended[kernel_id]
        self.connected &= running
        return gone


class AtomstatVoila(Voila):
    """Voila with atomstat's guards (see the module's docstring)."""

    name = "atomstat-voila"
    orphan_timeout = Integer(
        30,
        config=True,
        help="Shut down kernels with no page connected for this long, in s (0: never).",
    )
    orphan_interval = Integer(5, config=True, help="Look for orphaned kernels every N s.")
    first_connect_timeout = Integer(
        120,
        config=True,
        help="Like orphan_timeout, for kernels no page has connected to yet, in s.",
    )
    allowed_hosts = List(
        Unicode(), config=True, help="Host names served besides IP addresses and localhost."
    )

    def init_settings(self) -> dict:
        settings = super().init_settings()
        limit = upload_limit_bytes()
        hosts = list(self.allowed_hosts)
        if not is_loopback(self.ip):
            hosts += [socket.gethostname(), socket.getfqdn()]
        settings.update(
            websocket_max_message_size=limit + FRAME_MARGIN,
            atomstat_upload_limit=limit,
            atomstat_allowed_hosts=tuple(hosts),
        )
        return settings

    def init_handlers(self) -> list:
        swap = {TornadoVoilaHandler: PageHandler, VoilaKernelWebsocketHandler: KernelSocket,
                VoilaShutdownKernelHandler: ShutdownHandler}  # fmt: skip
        handlers = [
            (spec[0], swap.get(spec[1], spec[1]), *spec[2:]) for spec in super().init_handlers()
        ]
        count = url_path_join(self.server_url, "/atomstat/api/kernels")
        alive = url_path_join(count, _kernel_id_regex, "alive")
        return [(count, KernelCountHandler), (alive, AliveHandler), *handlers]

    def start(self):
        """Voila's start, with the guarded application and the orphan reaper."""
        import tempfile

        self.connection_dir = tempfile.mkdtemp(prefix="voila_", dir=self.connection_dir_root)
        settings = self.init_settings()
        self.app = GuardedApplication(**settings)
        self.app.settings.update(self.tornado_settings)
        self.app.add_handlers(".*$", self.init_handlers())
        if self.orphan_timeout > 0:
            reaper = OrphanReaper(self.kernel_manager, timeout=self.orphan_timeout,
                                  interval=self.orphan_interval,
                                  first_timeout=self.first_connect_timeout)  # fmt: skip
            self.app.settings["atomstat_reaper"] = reaper
            reaper.start()
        self.listen()


def _require_token(argv: list[str]) -> list[str]:
    """Voila's arguments, with ``$ATOMSTAT_TOKEN`` as the token, or a new one when
    ``--Voila.ip`` is not a loopback address and no token was given."""
    token = os.environ.pop("ATOMSTAT_TOKEN", "")  # the kernels need not see it
    ip = next((a.split("=", 1)[1] for a in argv if a.startswith("--Voila.ip=")), "127.0.0.1")
    if token:
        return [*argv, f"--Voila.token={token}"]
    if not is_loopback(ip):
        log.warning("serving on %s: visitors need the token in the link printed below", ip)
        return [*argv, "--Voila.auto_token=True"]
    return argv


def main(argv: list[str] | None = None) -> None:
    """Serve a notebook as ``voila`` does, with atomstat's guards."""
    logging.basicConfig(level=logging.INFO, format="[atomstat] %(message)s")
    AtomstatVoila.launch_instance(_require_token(list(sys.argv[1:] if argv is None else argv)))


PAGE_SCRIPT = """(function () {
  // ipywidgets' FileUpload reads the chosen file with FileReader.readAsArrayBuffer and
  // sends it in one websocket message. Larger than the limit, it is not read or sent.
  const limit = LIMIT;
  const read = FileReader.prototype.readAsArrayBuffer;
  FileReader.prototype.readAsArrayBuffer = function (blob) {
    const old = document.querySelector('.atomstat-upload-refused');
    if (!(blob instanceof File) || blob.size <= limit) {
      if (old && blob instanceof File) old.remove();
      return read.call(this, blob);
    }
    const mb = n => (n / 1048576).toFixed(1) + ' MB';
    const box = old || document.createElement('div');
    box.className = 'atomstat-upload-refused';
    box.setAttribute('role', 'alert');
    box.style.cssText = 'color:#b00020;white-space:normal;max-width:330px';
    box.textContent = 'Upload refused: ' + blob.name + ' is ' + mb(blob.size)
      + '; uploads are limited to ' + mb(limit)
      + '. Put large files in the data folder on the server instead.';
    const upload = document.querySelector('.widget-upload');
    if (!old) (upload ? upload.after(box) : document.body.prepend(box));
  };
})();
(function () {
  // Until its kernel websocket is up, and whenever it is down, the page says it is alive,
  // so that the server does not take its kernel for an orphan (10 visitors at once on 2
  // cores took over 30 s from the end of the render to the websocket).
  setInterval(function () {
    const element = document.getElementById('jupyter-config-data');
    if (!element) return;  // the kernel has not started yet
    const config = JSON.parse(element.textContent);
    const url = config.baseUrl + 'atomstat/api/kernels/' + config.kernelId + '/alive';
    fetch(url, {cache: 'no-store', credentials: 'same-origin'}).catch(function () {});
  }, HEARTBEAT_MS);
})();
(function () {
  // Voila sends its shutdown beacon on beforeunload, which a closing tab may skip
  // (headless Chromium does; mobile browsers often do). pagehide always fires.
  window.addEventListener('pagehide', function (event) {
    if (event.persisted) return;  // kept in the back-forward cache: it may come back
    const config = JSON.parse(document.getElementById('jupyter-config-data').textContent);
    const xsrf = (document.cookie.split('; ').find(c => c.startsWith('_xsrf=')) || '').slice(6);
    const body = new FormData();
    body.append('_xsrf', xsrf);
    navigator.sendBeacon(config.baseUrl + 'voila/api/shutdown/' + config.kernelId, body);
  });
})();"""


if __name__ == "__main__":
    main()
