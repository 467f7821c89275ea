"""``python -m discordsim``: see :mod:`discordsim.cli`."""

from discordsim.cli import main

raise SystemExit(main())
