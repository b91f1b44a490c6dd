"""`guardbot chat` as a user runs it: a real process, stdin from a pipe, a real log file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from adapters.console import decode_line


def chat(tmp_path: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli.main", *args],
        input=stdin,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_pipe_prints_reply_and_exits_zero_on_end_of_input(tmp_path: Path) -> None:
    result = chat(tmp_path, b"hello\n", "chat")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "(echo) hello\n"
    assert b"offline echo model" in result.stderr  # the visible notice
    assert (tmp_path / "guardbot.db").exists()


def test_bad_input_gives_clear_messages_and_no_traceback(tmp_path: Path) -> None:
    lines = [
        b"",  # empty line: ignored
        b"   ",  # blank: ignored
        b"x" * 1_000_000,  # 1 MB: refused by max_input_chars
        b"nul\x00byte",  # NUL removed, with a warning
        b"bad \xff\xfe utf8",  # replaced, with a warning
        b"last one",
    ]
    result = chat(tmp_path, b"\n".join(lines) + b"\n", "chat", "--explain")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err
    replies = out.splitlines()
    assert len(replies) == 4
    assert "too long" in replies[0] and "1000000 characters" in replies[0]
    assert replies[1] == "(echo) nulbyte"
    assert replies[2] == "(echo) bad \ufffd\ufffd utf8"
    assert replies[3] == "(echo) last one"
    assert "NUL bytes were removed" in err
    assert "not valid UTF-8" in err
    # --explain shows the verdicts and timings of each turn on stderr
    assert "max_input_chars" in err and "timings: total" in err


def test_broken_config_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[llm]\nmodle = 'x'\n")
    result = chat(tmp_path, b"hi\n", "chat")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "llm.modle (line 2): unknown key" in err
    assert "Traceback" not in err
    (tmp_path / "config.toml").write_text("[llm\n")
    result = chat(tmp_path, b"hi\n", "chat")
    assert result.returncode == 2 and "invalid TOML" in result.stderr.decode()


def test_config_command_masks_the_key(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "OPENAI_API_KEY": "sk-secret-value-123"}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli.main", "config"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0
    assert b"sk-secret-value-123" not in result.stdout + result.stderr
    assert b'"api_key": "***set***"' in result.stdout


def test_decode_line() -> None:
    assert decode_line(b"caf\xc3\xa9\r\n") == ("café", [])
    text, warnings = decode_line(b"\x00\xff")
    assert text == "\ufffd" and len(warnings) == 2


def test_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli.main", "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"first\n")
    proc.stdin.flush()
    # The reply proves the chat loop is running and waiting for more input.
    assert proc.stdout.readline() == b"(echo) first\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"Traceback" not in err


def test_console_commands_are_answered_locally_in_a_pipe(tmp_path: Path) -> None:
    lines = b"/help\n/explain on\nfirst\n/explain off\nsecond\n/explain maybe\n"
    result = chat(tmp_path, lines, "chat")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    for command in ("/help", "/quit, /exit", "/admin COMMAND", "/explain on|off"):
        assert command in out
    assert "explain is on" in out and "explain is off" in out
    assert out.endswith("(echo) first\nexplain is off\n(echo) second\n")
    assert err.count("timings: total") == 1  # only while explain was on
    assert "usage: /explain on|off" in err
    with sqlite3.connect(tmp_path / "guardbot.db") as db:
        texts = [row[0] for row in db.execute("SELECT text FROM decisions ORDER BY seq")]
    assert texts == ["first", "second"]  # no console command reached the bot


def test_quit_in_a_pipe_stops_reading_and_exits_zero(tmp_path: Path) -> None:
    result = chat(tmp_path, b"hi\n/quit\nnever sent\n", "chat")
    assert result.returncode == 0
    assert result.stdout == b"(echo) hi\n"
    assert b"Fatal Python error" not in result.stderr and b"Traceback" not in result.stderr


def test_input_redirected_from_a_file_is_one_message_per_line(tmp_path: Path) -> None:
    (tmp_path / "messages.txt").write_bytes(b"from a file\nno newline at the end")
    with (tmp_path / "messages.txt").open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli.main", "chat"],
            stdin=stdin,
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"(echo) from a file\n(echo) no newline at the end\n"


def test_replies_cannot_drive_the_terminal(tmp_path: Path) -> None:
    # The echo model repeats the message, so the reply carries what was sent:
    # a title change, a colour, a bidi override and a bell.
    hostile = "\x1b]0;pwned\x07 \x1b[31mred\u202e text"
    result = chat(tmp_path, hostile.encode() + b"\n", "chat", "--explain")
    assert result.returncode == 0, result.stderr.decode()
    shown = result.stdout.decode() + result.stderr.decode()
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in shown
    assert "red" in result.stdout.decode() and "timings: total" in result.stderr.decode()
    # The log keeps the message as it was; only the terminal view is made inert.
    with sqlite3.connect(tmp_path / "guardbot.db") as db:
        assert db.execute("SELECT text FROM decisions").fetchone() == (hostile,)
