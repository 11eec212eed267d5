"""The composition of the product: the ``gatewayd`` command and the one-process demo, which put the
daemon (`gatewayd`), the panel (`panel` with the built-in `plugins`) and the simulator together.
Nothing below imports this package."""
