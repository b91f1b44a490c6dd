"""Privacy: secrets never reach the file; PII masked on request; text kept only on request."""

from __future__ import annotations

import hashlib
from pathlib import Path

from middleware.decision_log import DecisionLog
from middleware.types import Outcome, Selection, Stage, Verdict
from tests.support.decision_log_support import make_decision, raw_db

SECRET = "sk-ABCdef1234567890XYZabcdef"
SLACK_TOKEN = "xoxb-1234567890-abcdefghijklmnop"
EMAIL = "bob@example.com"


def everywhere(text: str):  # type: ignore[no-untyped-def]
    """A decision carrying ``text`` in every text field the log stores."""
    d = make_decision(f"my key is {text}", reply=f"you said {text}", raw=f'{{"echo": "{text}"}}')
    d.error = f"failed near {text}"
    d.verdicts[0].reason = f"matched {text}"
    d.verdicts.append(
        Verdict(
            guard="vote",
            stage=Stage.INPUT,
            outcome=Outcome.ALLOW,
            members=[
                Verdict(guard="m", stage=Stage.INPUT, outcome=Outcome.ALLOW, raw=text, reason=text)
            ],
        )  # fmt: skip
    )
    d.candidates[0].error = f"candidate saw {text}"
    d.llm_calls[0].error = f"call saw {text}"
    d.selection = Selection(method="vote", reasoning=f"because {text}", votes={text: [0]})
    return d


def file_bytes(path: Path) -> bytes:
    return b"".join(
        Path(f"{path}{suffix}").read_bytes()
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )


async def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    log = await DecisionLog.open(path, store_text=True)
    d = everywhere(f"{SECRET} and {SLACK_TOKEN}")
    await log.record(d)
    await log.record_delivery(d.id, "failed", f"slack said no to {SLACK_TOKEN}")
    await log.record_admin_action(
        actor="console:me", platform="console", channel_id="c", command=f"set key {SECRET}",
        allowed=False, error=f"refused {SECRET}",
    )  # fmt: skip
    back = await log.get(d.id)
    assert back is not None and "[SECRET:openai]" in back.request.text
    assert (await log.verify()).ok
    on_disk = file_bytes(path)  # the WAL holds the rows until the next checkpoint
    await log.close()
    on_disk += file_bytes(path)
    for secret in (SECRET, SLACK_TOKEN):
        assert secret.encode() not in on_disk
    assert b"[SECRET:openai]" in on_disk


async def test_pii_is_masked_only_when_asked(tmp_path: Path) -> None:
    plain = await DecisionLog.open(tmp_path / "plain.db", redact_pii=False)
    redacting = await DecisionLog.open(tmp_path / "pii.db", redact_pii=True)
    for log in (plain, redacting):
        await log.record(everywhere(f"{EMAIL} or +1 415 555 0100"))
        await log.close()
    assert EMAIL.encode() in file_bytes(tmp_path / "plain.db")
    masked = file_bytes(tmp_path / "pii.db")
    assert EMAIL.encode() not in masked and b"555 0100" not in masked
    assert b"[EMAIL]" in masked and b"[PHONE]" in masked


async def test_store_text_false_keeps_hashes_and_lengths_only(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    log = await DecisionLog.open(path, store_text=False)
    d = everywhere("the quiet word")
    # Errors and local guards' reasons are operator text and stay; model prose goes.
    d.error = d.candidates[0].error = d.llm_calls[0].error = "model server answered HTTP 500"
    d.verdicts[-1].members[0].reason = "matched nothing"
    d.verdicts[-1].members[0].model = "guard-model"
    d.verdicts[-1].members.append(
        d.verdicts[-1].members[0].model_copy(update={"reason": "quoted: the quiet word"})
    )
    await log.record(d)
    stored = await log.get_stored(d.id)
    assert stored is not None and not stored.text_stored
    assert stored.text_chars == len(d.request.text)
    assert stored.text_sha256 == hashlib.sha256(d.request.text.encode()).hexdigest()
    assert stored.decision.request.text == "" and stored.decision.reply == ""
    assert await log.query(text="quiet") == []
    back = stored.decision
    assert back.verdicts[0].reason == "" and back.verdicts[0].raw is None  # judge-m wrote it
    assert back.verdicts[1].reason == "no PII found"  # a local guard's template
    assert back.selection is not None and back.selection.reasoning == ""
    assert list(back.selection.votes) == [
        "sha256:" + hashlib.sha256(b"the quiet word").hexdigest()[:16]
    ]
    # Without text there is no conversation memory to give back.
    assert await log.history("slack", "C1", "T1", max_turns=10, max_chars=1000) == []
    assert (await log.verify()).ok
    await log.close()
    with raw_db(path) as db:
        assert db.execute("SELECT text, reply FROM decisions").fetchone() == (None, None)
        assert db.execute("SELECT text FROM candidates").fetchone() == (None,)
        assert db.execute(
            "SELECT count(*) FROM verdicts WHERE raw_output IS NOT NULL"
        ).fetchone() == (0,)
    assert b"quiet word" not in file_bytes(path)


async def test_store_text_false_then_true_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    log = await DecisionLog.open(path, store_text=False)
    await log.record(make_decision("first"))
    await log.close()
    log = await DecisionLog.open(path, store_text=True)
    await log.record(make_decision("second"))
    assert [d.request.text for d in await log.query()] == ["second", ""]
    assert (await log.verify()).ok
    await log.close()
