"""Damaged or missing log files: one clear line on stderr, a non-zero exit, nothing created.

Each case runs the real `guardbot` command line in a subprocess, as an
operator would meet it, and checks that no traceback is printed and no file
or folder appears that the user did not ask for.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog
from tests.support.decision_log_support import make_decision

REPO = Path(__file__).resolve().parents[2]


def guardbot(cwd: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli.main", *argv], input=stdin, capture_output=True,
        text=True, cwd=cwd, env=env, timeout=90,
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def _fill(path: Path) -> None:
    log = await DecisionLog.open(path)
    try:
        for i in range(300):
            await log.record(make_decision(f"message {i} " * 20, reply=f"reply {i} " * 20))
    finally:
        await log.close()


def overwrite_a_page(path: Path, table: str) -> None:
    """Overwrite one data (leaf) page of ``table`` with garbage, as a bad disk would."""
    with sqlite3.connect(path) as db:
        pages = [
            r[0]
            for r in db.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,)
            )
        ]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    assert len(pages) > 2
    with open(path, "r+b") as f:
        f.seek((pages[len(pages) // 2] - 1) * size + 100)
        f.write(b"\xff" * (size - 200))


@pytest.mark.parametrize("table", ["decisions", "verdicts"])
@pytest.mark.parametrize("command", [["verify"], ["logs", "-n", "300"]])
def test_an_overwritten_page_is_one_line(tmp_path: Path, table: str, command: list[str]) -> None:
    path = tmp_path / "g.db"
    asyncio.run(_fill(path))
    overwrite_a_page(path, table)
    done = guardbot(tmp_path, *command, "--db", str(path))
    one_line_error(done, str(path), "damaged")
    assert done.returncode == 1


def test_a_log_path_that_is_not_sqlite_is_one_line_for_chat(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database at all\n" * 200)
    (tmp_path / "config.toml").write_text('[log]\npath = "notes.db"\n')
    done = guardbot(tmp_path, "--config", "config.toml", "chat", stdin="hello\n")
    one_line_error(done, "notes.db", "not a SQLite database")
    assert (tmp_path / "notes.db").read_text().startswith("not a database")


def test_prune_of_a_missing_log_creates_nothing(tmp_path: Path) -> None:
    done = guardbot(tmp_path, "prune", "--db", "missing.db", "--older-than", "30d")
    one_line_error(done, "no decision log at missing.db")
    assert sorted(os.listdir(tmp_path)) == []


def test_a_missing_folder_in_the_log_path_is_not_created(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[log]\npath = "typo/logs/guardbot.db"\n')
    done = guardbot(tmp_path, "--config", "config.toml", "chat", stdin="hello\n")
    one_line_error(done, "typo/logs", "does not exist")
    assert sorted(os.listdir(tmp_path)) == ["config.toml"]


def test_chat_still_creates_the_default_log_in_the_current_folder(tmp_path: Path) -> None:
    done = guardbot(tmp_path, "chat", stdin="hello\n")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "guardbot.db").is_file()
