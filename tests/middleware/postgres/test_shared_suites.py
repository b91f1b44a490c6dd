"""The SQLite log's own test suites, run again on PostgreSQL (the ``on_postgres`` fixture).

Each module's tests are imported here unchanged and collected a second time;
an autouse fixture makes every log they open a PostgreSQL database. Tests
that reach into the SQLite file itself (raw SQL, file modes, PRAGMAs) are
left out by name: their PostgreSQL counterparts are in this folder.
"""

from __future__ import annotations

import pytest

from tests.bot.test_admin_counts import *  # noqa: F403
from tests.bot.test_replay import *  # noqa: F403
from tests.bot.test_settings import *  # noqa: F403
from tests.middleware.test_budget import *  # noqa: F403
from tests.middleware.test_decision_log_store import *  # noqa: F403
from tests.middleware.test_event_claims import *  # noqa: F403

# Ends by writing to the SQLite file with raw SQL; the PostgreSQL triggers are
# checked in test_postgres_log.py.
del test_settings_changes_are_audited_in_the_same_transaction  # noqa: F821


@pytest.fixture(autouse=True)
def _every_log_on_postgres(on_postgres: dict[str, str]) -> None:
    """Every ``DecisionLog.open`` in these tests opens a PostgreSQL database."""
