"""``python -m dialwhom``: the same as the ``dialwhom`` command."""

from dialwhom.cli import main

raise SystemExit(main())
