"""Event claims: a platform event is answered once, by whichever instance claims it first.

Slack delivers an event again when its ack was late, two Socket Mode
connections may each receive it, and behind a load balancer two instances
may: a per-process set cannot see the others. A claim is one row whose
primary key is ``(platform, event_id)``; the first insert wins, every other
one finds the row and answers False. The rows are not part of the audit
chain (a claim decides nothing; the decision that follows is chained), so
they are removed once no retry can arrive any more: each claim deletes the
claims older than :data:`CLAIM_TTL` (an indexed range, usually empty).

Both backends run the same statements through the writer (``?`` placeholders
are translated for PostgreSQL), so a claim is committed before the caller
acts on it, and the same migration creates the table on either.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from middleware.decision_log.chain import Chainer
from middleware.decision_log.records import utc_text
from middleware.decision_log.writes import Op, Tx

# Slack retries for about five minutes; a day leaves room for a long outage.
CLAIM_TTL = timedelta(days=1)

CLAIMS_SQL = """
CREATE TABLE event_claims (
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    claimed_utc TEXT NOT NULL,
    PRIMARY KEY (platform, event_id)
) STRICT;
CREATE INDEX event_claims_claimed ON event_claims (claimed_utc);
"""
CLAIM_SQL = (
    "INSERT INTO event_claims (platform, event_id, claimed_utc) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
FORGET_SQL = "DELETE FROM event_claims WHERE claimed_utc < ?"


def claim(platform: str, event_id: str, now: datetime) -> Op:
    """The writer job: True when this is the first claim of the event on any instance."""
    if not platform or not event_id:
        raise ValueError("an event claim needs a platform and an event id")

    async def run(db: Tx, chain: Chainer) -> bool:
        await db.execute(FORGET_SQL, (utc_text(now - CLAIM_TTL),))
        inserted = await db.execute_fetchall(CLAIM_SQL, (platform, event_id, utc_text(now)))
        return bool(list(inserted))

    return Op(run)
