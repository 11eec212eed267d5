"""``python -m echat ...`` is ``gatewayd ...``."""

from echat.cli import main

raise SystemExit(main())
