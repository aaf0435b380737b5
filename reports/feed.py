"""The changes feed: every event of every report, in an order a follower can trust.

Event ids are allocated before commit, so "every id after the last one seen" skips an event
whose transaction commits after a later id became visible. The feed orders events by a
position that only ever grows at the visible end:

- PostgreSQL: `(txid, id)`, where `txid` is the writing transaction's id (a column default,
  migration 0005, so every write path sets it), and only events of transactions older than
  the oldest transaction still running in this database are served. Those transactions are
  over: nothing will ever appear before the horizon again, so the served part is a prefix
  that only grows. (Not `pg_snapshot_xmin`: xids are cluster-wide, and another database's
  long transaction would hold this feed back.) Writers pay nothing for it (an outbox sequence assigned under a
  lock at commit would serialise every writing transaction's commit, WAL flush included);
  the cost is that a long write transaction holds the feed back until it ends. The order
  agrees with commit order whenever one transaction committed before another began.
- SQLite: `id`. One writer at a time holds the database's write lock from its first write to
  its commit, so ids become visible in commit order.

The cursor is opaque (base64 of the position). A page that is not full moves the cursor to
the horizon, so a filtered follower does not scan the same events again.
"""

import base64
import binascii
import json
from dataclasses import dataclass

from django.db import connection

from bugtracker.rows import columns, from_row, select_list

from .models import BugReportEvent

EVENT_COLUMNS = columns(BugReportEvent)

# Where the next snapshot's xids start, and the 32-bit xids of this database's transactions
# still running (prepared ones too). Other databases' transactions cannot write our events:
# they must not hold the feed back (xids are cluster-wide).
_RUNNING_SQL = """
SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
       ARRAY(SELECT backend_xid::text::bigint FROM pg_stat_activity
              WHERE datname = current_database() AND backend_xid IS NOT NULL
             UNION ALL
             SELECT transaction::text::bigint FROM pg_prepared_xacts
              WHERE database = current_database())
"""

_FEED_SQL = """
SELECT {columns}, e.txid FROM bug_report_events e
 WHERE (e.txid, e.id) > (%(txid)s, %(id)s) AND e.txid < %(horizon)s {kinds}
 ORDER BY e.txid, e.id
 LIMIT %(limit)s
""".replace("{columns}", select_list(BugReportEvent, EVENT_COLUMNS, "e"))

_EPOCH = 1 << 32


def full_xid(xid32: int, xmax: int) -> int | None:
    """The 64-bit id of a running transaction's 32-bit xid, or None when it is not older
    than `xmax` (a transaction that began after the snapshot: it cannot lower the horizon)."""
    behind = (xmax - xid32) % _EPOCH
    if behind == 0 or behind >= _EPOCH // 2:
        return None
    return xmax - behind


def _horizon(cursor) -> int:
    """Every transaction of this database with an id below this one has ended.

    Read in a statement of its own, before the page: a transaction that ends between the two
    is then visible to the page's snapshot.
    """
    cursor.execute(_RUNNING_SQL)
    xmax, running = cursor.fetchone()
    older = [x for x in (full_xid(xid, xmax) for xid in running) if x is not None]
    return min([xmax, *older])


@dataclass(frozen=True)
class Position:
    txid: int = 0
    id: int = 0

    def encode(self) -> str:
        raw = json.dumps([self.txid, self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> "Position":
        """ValueError for anything that is not a cursor this feed gave out."""
        try:
            txid, id_ = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=="))
        except (ValueError, TypeError, binascii.Error, UnicodeError):
            raise ValueError("Invalid cursor.") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (txid, id_)):
            raise ValueError("Invalid cursor.")
        return cls(txid, id_)


def feed_page(
    *, after: Position, kinds: list[str] | None, limit: int
) -> tuple[list[BugReportEvent], Position]:
    """Up to `limit` events after `after` (of `kinds`, when given), and the position to
    resume from: the last event's, or the horizon's when the page is not full."""
    if connection.vendor == "postgresql":
        return _page_postgresql(after, kinds, limit)
    events = BugReportEvent.objects.filter(id__gt=after.id).order_by("id")
    if kinds:
        events = events.filter(kind__in=kinds)
    page = list(events[:limit])
    return page, Position(0, page[-1].id) if page else after


def _page_postgresql(after: Position, kinds, limit):
    with connection.cursor() as cursor:
        horizon = _horizon(cursor)
        params = {"txid": after.txid, "id": after.id, "limit": limit, "horizon": horizon}
        kind_filter = ""
        if kinds:
            kind_filter = "AND e.kind = ANY(%(kinds)s)"
            params["kinds"] = list(kinds)
        cursor.execute(_FEED_SQL.replace("{kinds}", kind_filter), params)
        rows = cursor.fetchall()
    page = [from_row(BugReportEvent, EVENT_COLUMNS, row) for row in rows]
    last = Position(rows[-1][-1], page[-1].id) if page else after
    if len(page) < limit and horizon > last.txid:
        # Everything before the horizon was served: resume from there.
        last = Position(horizon, 0)
    return page, last
