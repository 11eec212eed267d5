"""``python -m gatewayd ...`` is ``gatewayd ...``."""

from gatewayd.cli import main

raise SystemExit(main())
