"""``python -m atomstat``: the command line (see :mod:`atomstat.cli`)."""

from atomstat.cli import main

raise SystemExit(main())
