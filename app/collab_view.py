"""The collaboration panel: your name, the latest label changes, store problems.

The name is typed once and kept in the browser (``localStorage``), so the
next visit, or a reload, signs changes with the same name; a visitor who
types none gets ``guest-xxxx``, also kept. No accounts: the name only tells
collaborators whose change is whose, and lets undo take back one's own.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from app.report import report

__all__ = ["CollabPanel"]

# The HTML widget sets innerHTML, where <script> does not run; an image that fails to
# load runs its onerror handler. It fills the name box from localStorage (or makes a
# guest name) and keeps whatever the visitor types there.
_KEEP_NAME = """<img src="data:," style="display:none" onerror="(function () {
  var key = 'atomstat-user', tries = 0;
  var timer = setInterval(function () {
    var box = document.querySelector('.atomstat-user input');
    if (!box) { if (++tries > 300) clearInterval(timer); return; }
    clearInterval(timer);
    var name = localStorage.getItem(key);
    if (!name) {
      name = 'guest-' + Math.random().toString(16).slice(2, 6);
      localStorage.setItem(key, name);
    }
    box.value = name;
    box.dispatchEvent(new Event('change', {bubbles: true}));
    box.addEventListener('change', function () {
      if (box.value.trim()) localStorage.setItem(key, box.value.trim());
    });
  }, 100);
})()">"""


class CollabPanel:
    """Who you are, what changed lately (and who changed it), and what went wrong."""

    def __init__(self, state, errors: widgets.Output):
        self.state, self.errors = state, errors
        self.user = widgets.Text(
            value=state.user, description="You", placeholder="your name",
            continuous_update=False, layout={"width": "240px"},
            tooltip="Your name signs your label changes; it is kept in this browser",
        )  # fmt: skip
        self.user.add_class("atomstat-user")
        self.keeper = widgets.HTML(_KEEP_NAME)
        self.message = widgets.HTML()
        self.message.add_class("atomstat-store-message")
        self.history = widgets.HTML(layout={"height": "auto", "max_height": "140px",
                                            "overflow": "auto"})  # fmt: skip
        self.history.add_class("atomstat-history")
        self.user.observe(self._named, "value")
        state.observe(lambda c: self._show_message(c.new), "store_message")
        state.observe(lambda _: self.refresh(), ["labels_version", "table"])
        self.widget = widgets.VBox([self.user, self.keeper, self.message, self.history])
        self.refresh()

    def _named(self, change) -> None:
        name = change.new.strip()
        if name and name != self.state.user:
            with report(self.state, self.errors):
                self.state.user = name[:80]

    def _show_message(self, text: str) -> None:
        self.message.value = (
            f"<div style='color:#b00020;white-space:normal;overflow-wrap:anywhere'>"
            f"{html.escape(text)}</div>"
            if text
            else ""
        )

    def refresh(self) -> None:
        """The latest label actions on the open file, newest first."""
        actions = self.state.collab.history(limit=6)
        if actions is None or not len(actions):
            self.history.value = ""
            return
        lines = [
            f"{row.at:%H:%M:%S} <b>{html.escape(str(row.user))}</b>: {html.escape(str(row.text))}"
            for row in actions.itertuples()
        ]
        self.history.value = (
            "<div style='line-height:1.35;white-space:normal;overflow-wrap:anywhere'><small>"
            + "<br>".join(lines)
            + "</small></div>"
        )
