"""``python -m simulator simulator ...`` (the lead wires the same command into ``gatewayd``)."""

import sys

from simulator.cli import main

sys.exit(main())
