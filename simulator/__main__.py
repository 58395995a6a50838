"""``python -m dialwhom.simulator URL [...]``: the simulator on its own."""

from dialwhom.simulator import main

raise SystemExit(main())
