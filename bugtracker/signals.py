"""Hooks the plumbing offers the domain apps, so that it never imports them."""

from django.dispatch import Signal

# A write the database refused (a 503 problem): `what` (method and path), `report_id`
# (or None), `payload` (the request body, or None) and `exc`. Telemetry connects a receiver
# that logs it with its content, so the write can be replayed.
write_refused = Signal()
