"""Webhooks (issue 14, docs/WEBHOOKS.md): subscriptions (:mod:`.subscriptions`), deliveries queued with
their events (:mod:`.enqueue`), signed and posted by the daemon's worker (:mod:`.delivery`)."""
