"""Hooks the plumbing offers the domain apps, so that it never imports them."""

from django.dispatch import Signal

# A write the database refused (a 503 problem): `what` (method and path), `report_id`
# (or None), `payload` (the request body, or None) and `exc`. Telemetry connects a receiver
# that logs it with its content, so the write can be replayed.
write_refused = Signal()

# This process serves the app (`kind`: runserver or gunicorn), sent by its entry point
# (remediation.startup.serving, called by the runserver command and gunicorn.conf.py) before
# it starts the remediation worker. Rooms that run something in every serving process (the
# webhook dispatcher) connect to it.
process_serving = Signal()
