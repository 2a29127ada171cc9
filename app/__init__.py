"""The atomstat Voila dashboard.

``state`` holds what the page shows and imports no widgets; ``page`` builds the
widgets and bqplot figure that observe it. ``dashboard.ipynb`` only calls
:func:`app.page.build_page`. All analysis is done by :mod:`atomstat`.
"""
