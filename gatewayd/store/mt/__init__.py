"""The MT outbox, by lifecycle: ``queue`` (queued) -> ``claims`` (sending, leased to one daemon) ->
``results`` (each segment's submit_sm_resp: accepted, retried or failed) -> ``receipts`` (delivered,
failed, expired), with ``status`` deriving an MT's status from its parts and writing its history.

The statement sets whose SQL differs between SQLite and PostgreSQL (claims, results, receipts,
status) are classes with one implementation per dialect; :class:`gatewayd.store.store.Store` picks
them once, from the engine. The value types the pipelines pass in and get back are in ``values``.
"""
