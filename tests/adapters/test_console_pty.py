"""`guardbot chat` in a real pseudo-terminal, as a person uses it.

The process runs under pexpect with a pty of 80 columns; what it draws is fed
to pyte, a VT100 emulator, so assertions read the screen a person would see
(prompt_toolkit draws with cursor moves, not plain text). The emulator also
answers the cursor-position requests prompt_toolkit sends, as a terminal does.
Waits are for something to appear on the screen, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte
import pytest

from bot.app import SHUTDOWN_ERROR
from tests.stubs.openai_server import Recorded, Reply
from tests.stubs.threaded import stub_in_thread

ROWS, COLUMNS = 24, 80
CPR_REQUEST = b"\x1b[6n"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
UP, ENTER, CTRL_C, CTRL_D = "\x1b[A", "\r", "\x03", "\x04"


class Terminal:
    """One `guardbot chat` process on a pty, and the screen it has drawn so far."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.output = bytearray()  # everything written, for what the screen does not keep
        environ = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "bot.cli.main", "chat", *args],
            cwd=str(cwd),
            env={**environ, "TERM": "xterm-256color", **(env or {})},
            dimensions=(ROWS, COLUMNS),
            timeout=30,
        )

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def _pump(self, timeout: float) -> bool:
        """Read what the program wrote (False at its end) and draw it on the screen."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.output += data
        self.stream.feed(data)
        for _ in range(data.count(CPR_REQUEST)):
            cursor = self.screen.cursor
            self.child.send(f"\x1b[{cursor.y + 1};{cursor.x + 1}R")
        return True

    def wait_for(self, seen: str | Callable[[str], bool], timeout: float = 30) -> str:
        """Read until the screen shows ``seen`` (text, or a test of the screen's text)."""
        test = seen if callable(seen) else (lambda screen: seen in screen)
        loop = asyncio.new_event_loop()  # only for its monotonic clock
        deadline = loop.time() + timeout
        try:
            while not test(self.text()):
                left = deadline - loop.time()
                if left <= 0 or not self._pump(min(left, 1.0)):
                    raise AssertionError(f"never saw {seen!r}; screen:\n{self.text()}")
        finally:
            loop.close()
        return self.text()

    def prompt(self) -> None:
        """Wait for an empty prompt line, the sign that the chat takes input again."""
        self.wait_for(lambda _: self.screen.display[self.screen.cursor.y].rstrip() == "you>")

    def type(self, keys: str) -> None:
        self.child.send(keys)

    def exit_code(self) -> int:
        """Read to the end and return how the process ended (a signal fails the test)."""
        while self._pump(30):
            pass
        self.child.close()
        assert self.child.signalstatus is None, f"killed by signal {self.child.signalstatus}"
        status = self.child.exitstatus
        assert isinstance(status, int)
        return status


def decisions(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(f"file:{tmp_path / 'guardbot.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT action, text, error FROM decisions ORDER BY seq").fetchall()


def assert_clean(term: Terminal) -> None:
    output = bytes(term.output)
    assert b"Fatal Python error" not in output and b"Traceback" not in output, output


class SlowModel:
    """A model server whose reply waits until the test lets it go (or the client hangs up)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.asked = threading.Event()  # set on the stub's thread, waited for on the test's

    def answer(self, _rec: Recorded) -> Reply:
        self.loop = asyncio.get_running_loop()  # the stub's loop, on its own thread
        self.asked.set()
        return Reply(text="a considered answer", hold=self.release)

    def let_answer(self) -> None:
        assert self.asked.wait(30) and self.loop is not None, "no request reached the model"
        self.loop.call_soon_threadsafe(self.release.set)


@pytest.fixture
def slow_model(tmp_path: Path) -> Iterator[SlowModel]:
    model = SlowModel()
    with stub_in_thread(model.answer) as stub:
        (tmp_path / "config.toml").write_text(
            f'[llm]\nprovider = "openai"\nbase_url = "{stub.base_url}"\nmax_retries = 0\n'
        )
        yield model


@pytest.mark.parametrize("keys", ["/quit\r", "/exit\r", "/QUIT\r", CTRL_D])
def test_quit_words_and_ctrl_d_exit_zero_without_a_fatal_error(tmp_path: Path, keys: str) -> None:
    term = Terminal(tmp_path)
    term.prompt()
    term.type("hello" + ENTER)
    term.wait_for("bot> (echo) hello")
    term.prompt()
    term.type(keys)
    assert term.exit_code() == 0
    assert_clean(term)


def test_ctrl_c_at_the_prompt_exits_130(tmp_path: Path) -> None:
    term = Terminal(tmp_path)
    term.prompt()
    term.type("half typed")
    term.wait_for("you> half typed")
    term.type(CTRL_C)
    assert term.exit_code() == 130
    assert_clean(term)
    assert decisions(tmp_path) == []  # nothing was sent


def test_thinking_shows_during_the_wait_and_goes_when_the_reply_prints(
    tmp_path: Path, slow_model: SlowModel
) -> None:
    term = Terminal(tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    term.prompt()
    term.type("what is tea?" + ENTER)
    term.wait_for("thinking…")
    slow_model.let_answer()
    screen = term.wait_for("bot> a considered answer")
    assert "thinking" not in screen
    term.prompt()
    term.type("/quit" + ENTER)
    assert term.exit_code() == 0
    assert_clean(term)


def test_ctrl_c_during_a_reply_exits_130_and_logs_the_message_as_cancelled(
    tmp_path: Path, slow_model: SlowModel
) -> None:
    term = Terminal(tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    term.prompt()
    term.type("a question never answered" + ENTER)
    term.wait_for("thinking…")
    term.type(CTRL_C)
    assert term.exit_code() == 130
    assert_clean(term)
    assert b"cancelled before the reply was ready" in term.output
    # One error decision says the message was cut off; nothing else claims an answer.
    assert decisions(tmp_path) == [("error", "a question never answered", SHUTDOWN_ERROR)]


def test_history_is_kept_across_runs_in_a_private_file(tmp_path: Path) -> None:
    term = Terminal(tmp_path)
    term.prompt()
    term.type("remember this" + ENTER)
    term.wait_for("bot> (echo) remember this")
    term.prompt()
    term.type(CTRL_D)
    assert term.exit_code() == 0
    history = tmp_path / "guardbot.history"  # beside guardbot.db
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert "remember this" in history.read_text()

    again = Terminal(tmp_path)
    again.prompt()
    again.type(UP)  # the Up arrow recalls the last run's message, not "^[[A"
    again.wait_for("you> remember this")
    again.type(ENTER)
    again.wait_for(lambda screen: screen.count("bot> (echo) remember this") == 1)
    again.prompt()
    again.type(CTRL_D)
    assert again.exit_code() == 0
    assert [text for _, text, _ in decisions(tmp_path)] == ["remember this"] * 2


def test_a_pasted_block_of_lines_is_one_message(tmp_path: Path) -> None:
    term = Terminal(tmp_path)
    term.prompt()
    block = "first line\nsecond line\nthird line\nfourth line"
    term.type(PASTE_START + block + PASTE_END)
    term.wait_for("fourth line")
    term.type(ENTER)
    term.wait_for("bot> (echo) first line")
    term.prompt()
    term.type(CTRL_D)
    assert term.exit_code() == 0
    assert decisions(tmp_path) == [("replied", block, None)]


def test_help_is_answered_locally_and_explain_toggles(tmp_path: Path) -> None:
    term = Terminal(tmp_path)
    term.prompt()
    term.type("/help" + ENTER)
    screen = term.wait_for("/explain on|off")
    for command in ("/help", "/quit, /exit", "/admin COMMAND", "a pasted block"):
        assert command in screen
    term.prompt()
    term.type("/explain on" + ENTER)
    term.wait_for("explain is on")
    term.prompt()
    term.type("tea" + ENTER)
    term.wait_for("timings: total")
    term.prompt()
    term.type(CTRL_D)
    assert term.exit_code() == 0
    assert [text for _, text, _ in decisions(tmp_path)] == ["tea"]  # /help never reached it
