"""The "Live run and library" section of the page: follow a run, browse its defects.

A results folder inside the data folder (what ``atomstat watch DIR --out
RESULTS`` or ``atomstat analyze FILES --dataset --out RESULTS`` writes) is
opened either as a live run (:class:`app.live_view.LiveView`, refreshed every
:data:`LIVE_INTERVAL` seconds) or as a library of defects across its images
(:class:`app.library_view.LibraryView`, labels into the shared store). The
panel only resolves the folder and swaps the views; the views and the
library do the work.
"""

from __future__ import annotations

import ipywidgets as widgets

from app.data import PathError, inside
from app.report import report
from app.state import AppState

__all__ = ["LIVE_INTERVAL", "RunsPanel"]

#: Seconds between the Live view's looks at the dataset. A look that finds nothing new is a
#: listing of the partitions (milliseconds for thousands); one that finds a frame redraws it
#: (about 0.08 s for 1024^2). At 1 s the wait added half a second to the latency on average.
LIVE_INTERVAL = 0.25


class RunsPanel:
    """A closed section with a folder box, "Follow live" and "Open library"."""

    def __init__(self, state: AppState, errors: widgets.Output, *,
                 interval: float = LIVE_INTERVAL):  # fmt: skip
        self.state, self.errors, self.interval = state, errors, float(interval)
        self.live = None  # the LiveView being followed
        self.library = None  # the LibraryView shown
        self.folder = widgets.Text(
            value="results", description="Results",
            tooltip="a folder of the data folder that atomstat watch or analyze --dataset writes",
            layout={"width": "340px"},
        )  # fmt: skip
        self.follow_button = widgets.Button(
            description="Follow live", tooltip="show the newest frame of the run as it is written"
        )
        self.library_button = widgets.Button(
            description="Open library", tooltip="defects across the folder's images, to label"
        )
        self.message = widgets.HTML()
        self.view = widgets.Box()
        self._scroll = widgets.HTML(layout={"height": "0px", "margin": "0px"})
        self._scrolls = 0
        self.follow_button.on_click(lambda _: self._call(self.follow))
        self.library_button.on_click(lambda _: self._call(self.open_library))
        body = widgets.VBox([widgets.HBox([self.folder, self.follow_button, self.library_button]),
                             self.message, self.view, self._scroll])  # fmt: skip
        body.add_class("atomstat-runs")
        self.widget = widgets.Accordion([body], selected_index=None)
        self.widget.set_title(0, "Live run and library")

    def _call(self, action) -> None:
        with report(self.state, self.errors):
            action()

    def _root(self, *, yet: bool = False):
        """The results folder, or None with the reason shown; with ``yet``, also a folder
        that does not exist yet (a run about to start)."""
        try:
            root = inside(self.state.data_dir, self.folder.value.strip())
        except PathError as exc:
            self._say(str(exc))
            return None
        if root.exists() and not root.is_dir():
            self._say(f"{self.folder.value.strip()!r} is a file, not a results folder")
            return None
        if not root.is_dir() and not yet:
            self._say(f"no folder {self.folder.value.strip()!r} in the data folder yet")
            return None
        return root

    def _show(self, widget: widgets.Widget) -> None:
        """Put ``widget`` in the view and scroll the page so that the section's buttons
        and the view are on screen (at 1366x768 the section starts below the image)."""
        self.view.children = [widget]
        # innerHTML does not run <script>: an image that fails to load runs its onerror
        # (as app.page's shortcuts do); the count makes every call a new value. The
        # delay lets the browser lay the new view out first.
        self._scrolls += 1
        self._scroll.value = (
            f'<img src="data:," alt="" data-n="{self._scrolls}" style="display:none" '
            "onerror=\"var s=this.closest('.atomstat-runs');"
            "if(s)setTimeout(function(){s.scrollIntoView({block:'start'});},150)\">"
        )

    def _say(self, text: str) -> None:
        self.message.value = f"<span style='color:#d55e00'>{text}</span>" if text else ""

    def stop(self) -> None:
        """Stop following the live run (if one is followed)."""
        if self.live is not None:
            self.live.stop()
            self.live = None

    def follow(self) -> bool:
        """Show the run in the folder and follow it; True if it is followed. A folder that
        does not exist yet is followed too: the run has not written its first file."""
        from app.live_view import LiveFeed, LiveView

        root = self._root(yet=True)
        if root is None:
            return False
        self.stop()
        self.live = LiveView(LiveFeed(root), interval=self.interval)
        self.live.refresh()
        self.live.start()
        self._show(self.live.widget)
        started = root.is_dir()
        self._say("" if started else f"waiting for {self.folder.value.strip()!r} to appear")
        return True

    def open_library(self) -> bool:
        """Show the folder's defects across images; True if it could be opened."""
        from app.library_view import Gallery, LibraryView
        from atomstat.library import Library
        from atomstat.store import LabelStore, store_path

        root = self._root()
        if root is None:
            return False
        self.stop()
        library = Library(root)
        store = LabelStore(store_path(self.state.data_dir))
        before = self.library
        self.library = LibraryView(Gallery(library, store), user=self.state.user)
        if before is not None:  # opened again (to see others' labels): the same pick
            self.library.pick(before.material.value, before.kind.value)
        self._show(self.library.widget)
        self._say("")
        return True
