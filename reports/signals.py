"""Signals other rooms listen to, so reports never imports them.

`report_changed` is sent (with `report_id`) whenever a report is written: inserted, saved
through the lifecycle, claimed. It is sent inside the writing transaction; a receiver that
acts on the committed row defers itself with `transaction.on_commit`. The legacy mirror
connects to it in its AppConfig.ready; without a receiver it costs nothing.
"""

from django.dispatch import Signal

report_changed = Signal()


def announce_change(report_id) -> None:
    """Tell the receivers of `report_changed` that `report_id` was written."""
    if report_changed.has_listeners():
        report_changed.send(sender=None, report_id=report_id)
