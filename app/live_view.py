"""The "Live" view: follow a run that ``atomstat watch`` (or a batch) is writing.

:class:`LiveFeed` holds no widgets: it reads the partitions of the Parquet
dataset that appeared since its last look, and keeps the newest frame's
atoms, running histograms of a few descriptors over every atom so far, and
running counts of the defects by kind (and of the anomaly flags).
:class:`LiveView` draws it: the newest frame with its atoms, the histograms
and the counts, refreshed every ``interval`` seconds. Each viewer's kernel
has its own feed on the same dataset, so several people can watch one run.

Wiring it into the page: ``LiveView(LiveFeed(results_folder)).widget`` is
one ipywidgets box; call ``view.start()`` to follow and ``view.stop()`` when
the page closes.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["LiveFeed", "LiveView"]

log = logging.getLogger(__name__)

COLUMNS = ("area", "nn_distance", "intensity")
FRAME_SIDE = 512  # px, the longest side of the newest frame's PNG (the figure is 460 px)
FLAGGED = "anomaly flag"  # the count of the atoms table's anomaly column


class LiveFeed:
    """What a run has written so far.

    Parameters
    ----------
    root : str or Path
        The dataset's folder (``atomstat watch DIR --out ROOT``).
    columns : sequence of str
        Descriptors with a running histogram.
    bins : int
        Bins per histogram; the edges are fixed by the first atoms seen
        (their 1-99 % range, widened by half), and later values beyond them
        are counted in the end bins.
    """

    def __init__(self, root, *, columns=COLUMNS, bins: int = 40):
        self.root = Path(root)
        self.columns, self.bins = tuple(columns), int(bins)
        self.seen: set = set()
        self.edges: dict = {}
        self.counts = {c: np.zeros(self.bins, np.int64) for c in self.columns}
        self.kinds: dict[str, int] = {}
        self.frames = 0
        self.atoms = 0
        self.newest: pd.DataFrame | None = None  # the atoms of the newest frame
        self.newest_key = None  # (source_id, frame)
        self._sources: dict = {}  # source_id -> (path, name)

    def poll(self) -> bool:
        """Read the partitions written since the last call; True if there were any."""
        parts = sorted(
            (p.stat().st_mtime_ns, p)
            for p in (self.root / "atoms").glob("*/frames-*.parquet")
            if p not in self.seen
        )
        for _, part in parts:
            try:
                table = pd.read_parquet(part)
            except (OSError, ValueError) as exc:  # half-renamed, or gone: next time
                log.debug("not read yet: %s (%s)", part, exc)
                continue
            self.seen.add(part)
            self._add(table, part)
        return bool(parts)

    def _add(self, table: pd.DataFrame, part: Path) -> None:
        self.atoms += len(table)
        frames = sorted(set(table["frame"])) if len(table) else []
        self.frames += len(frames)
        for column in self.columns:
            if column in table:
                self._count(column, table[column].to_numpy(float))
        if "anomaly" in table:  # the per-frame flags, apart from the defect finder's kinds
            flags = int(table["anomaly"].sum())
            self.kinds[FLAGGED] = self.kinds.get(FLAGGED, 0) + flags
        defects = part.parent.parent.parent / "defects" / part.parent.name / part.name
        if defects.is_file():
            for kind, n in pd.read_parquet(defects)["kind"].value_counts().items():
                self.kinds[str(kind)] = self.kinds.get(str(kind), 0) + int(n)
        if frames:
            last = frames[-1]
            self.newest = table[table["frame"] == last].reset_index(drop=True)
            self.newest_key = (part.parent.name, int(last))

    def _count(self, column: str, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        if not len(values):
            return
        if column not in self.edges:
            low, high = np.percentile(values, [1, 99])
            pad = 0.5 * max(high - low, 1e-9)
            self.edges[column] = np.linspace(low - pad, high + pad, self.bins + 1)
        edges = self.edges[column]
        index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, self.bins - 1)
        self.counts[column] += np.bincount(index, minlength=self.bins)

    def source(self, sid: str):
        """``(path, name)`` of the source ``sid`` from the dataset's sources (None, None
        while its record is not written)."""
        if sid not in self._sources:
            from atomstat.library import Library

            paths = Library(self.root).query("select source_id, path, name from sources")
            for row in paths.itertuples(index=False):
                self._sources[row.source_id] = (row.path, row.name)
        return self._sources.get(sid, (None, None))

    def newest_image(self) -> np.ndarray | None:
        """The pixels of the newest frame, read from its source (None before any)."""
        if self.newest_key is None:
            return None
        from atomstat.library import _frame

        sid, frame = self.newest_key
        path, _ = self.source(sid)
        return _frame(path, frame) if path is not None else None


class LiveView:
    """The newest frame with its atoms, the running histograms and the defect counts."""

    def __init__(self, feed: LiveFeed, *, interval: float = 0.5):
        import bqplot as bq
        import ipywidgets as widgets

        self.feed, self.interval = feed, float(interval)
        self._stop = threading.Event()
        self._thread = None
        # The scales span the frame (set with each new frame), as the image view's do
        self.sx = sx = bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
        self.sy = sy = bq.LinearScale(min=0.0, max=1.0, reverse=True, allow_padding=False)
        self.image = bq.Image(
            image=widgets.Image(value=b"", format="png"), scales={"x": sx, "y": sy},
            x=[0, 1], y=[0, 1],
        )  # fmt: skip
        self.points = bq.Scatter(x=[], y=[], scales={"x": sx, "y": sy}, default_size=12,
                                 colors=["#00b4ff"], stroke="black")  # fmt: skip
        self.frame = bq.Figure(
            marks=[self.image, self.points], padding_y=0, title="waiting",
            title_style={"font-size": "14px"},
            fig_margin={"top": 40, "bottom": 10, "left": 10, "right": 10},
            layout=widgets.Layout(width="460px", height="490px"),
        )  # fmt: skip
        self.bars = {}
        figures = []
        for column in feed.columns:
            bx, by = bq.LinearScale(allow_padding=False), bq.LinearScale(min=0)
            bars = bq.Bars(x=[0.0, 1.0], y=[0.0, 0.0], scales={"x": bx, "y": by},
                           colors=["#9e9e9e"])  # fmt: skip
            self.bars[column] = bars
            axis = bq.Axis(scale=bx, num_ticks=4, tick_format=".3~s")
            layout = widgets.Layout(width="340px", height="150px")
            margin = {"top": 30, "bottom": 25, "left": 20, "right": 20}
            figures.append(bq.Figure(marks=[bars], title=column, axes=[axis], fig_margin=margin,
                                     layout=layout, title_style={"font-size": "14px"}))  # fmt: skip
        self.table = widgets.HTML(layout=widgets.Layout(margin="0 0 0 20px"))
        self.widget = widgets.HBox(
            [self.frame, widgets.VBox(figures), self.table],
            layout=widgets.Layout(align_items="flex-start"),
        )

    def refresh(self) -> bool:
        """Poll the feed and redraw what changed; True if anything did."""
        if not self.feed.poll():
            return False
        from app.render import display_png

        image = self.feed.newest_image()
        atoms = self.feed.newest
        if image is not None:
            import ipywidgets as widgets

            # at most twice the figure's size: a 1024^2 frame's full PNG took longer to make
            # and to send than the figure can show
            png, xs, ys = display_png(image, max_side=FRAME_SIDE)
            # A new Image widget: bqplot's Image mark does not redraw when the value of the
            # one it holds changes (so the frame stayed blank under its atoms)
            old = self.image.image
            with self.image.hold_sync():
                self.image.image = widgets.Image(value=png, format="png")
                self.image.x, self.image.y = xs, ys
            old.close()  # else every frame's PNG stays in the kernel
            with self.sx.hold_sync(), self.sy.hold_sync():
                self.sx.min, self.sx.max = float(min(xs)), float(max(xs))
                self.sy.min, self.sy.max = float(min(ys)), float(max(ys))
        with self.points.hold_sync():
            self.points.x, self.points.y = atoms["x"].to_numpy(), atoms["y"].to_numpy()
        sid, frame = self.feed.newest_key
        name = self.feed.source(sid)[1] or sid[:8]
        self.frame.title = f"{name}, frame {frame}: {len(atoms)} atoms"
        for column, bars in self.bars.items():
            edges = self.feed.edges.get(column)
            if edges is not None:
                with bars.hold_sync():
                    bars.x = (edges[:-1] + edges[1:]) / 2
                    bars.y = self.feed.counts[column].astype(float)
        kinds = {k: n for k, n in self.feed.kinds.items() if k != FLAGGED}
        cell = "padding:0 8px"
        rows = (
            "".join(
                f"<tr><td style='{cell}'>{k}</td><td style='{cell};text-align:right'>{n}</td></tr>"
                for k, n in sorted(kinds.items())
            )
            or f"<tr><td style='{cell}' colspan=2>none found yet</td></tr>"
        )
        flags = self.feed.kinds.get(FLAGGED)
        flagged = "" if flags is None else f"<p>{flags} atoms with an anomaly flag</p>"
        self.table.value = (
            f"<b>{self.feed.frames} frames, {self.feed.atoms} atoms</b>"
            f"<table style='margin-top:6px'><tr><th style='{cell};text-align:left'>defect</th>"
            f"<th style='{cell}'>count</th></tr>{rows}</table>{flagged}"
        )
        return True

    def start(self) -> None:
        """Follow the run in a background thread (every ``interval`` seconds)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="atomstat-live")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        # What the first refresh needs, imported while nothing is written yet
        import pyarrow.parquet  # noqa: F401

        import app.render  # noqa: F401

        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # a view must not die with one bad partition
                log.exception("live view: refresh failed")
