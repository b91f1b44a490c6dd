"""`guardbot eval`: per-guard and overall metrics, threshold sweeps, clear input errors.

Run through the real CLI entry with a config of two guards: a ``classifier``
on the stub TEI server (its scores scripted per text) and a blocklist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import main
from tests.stubs.classifier_server import Answer, Call, StubClassifier, classifier_in_thread

MALICIOUS = {"attack one": 0.9, "attack two": 0.4, "hello": 0.6, "thanks": 0.1, "nightjar": 0.05}
ITEMS = [
    {"text": "attack one", "label": "prompt_guard"},
    {"text": "attack two", "label": "prompt_guard"},
    {"text": "hello", "label": "safe"},
    {"text": "thanks", "label": "benign", "stage": "input"},
    {"text": "nightjar", "label": "blocklist"},
    {"text": "broken", "label": "safe"},  # the classifier answers HTTP 500: fail-closed fires
    {"text": "nightjar in a reply", "label": "harm", "stage": "output"},
]


def script(call: Call) -> Answer:
    text = call.body["inputs"]
    if text == "broken":
        return Answer(status=500)
    p = MALICIOUS.get(text, 0.0)
    return Answer(scores={"LABEL_0": round(1 - p, 4), "LABEL_1": p})


@pytest.fixture
def stub() -> Iterator[StubClassifier]:
    with classifier_in_thread(script) as running:
        yield running


@pytest.fixture
def config_file(tmp_path: Path, stub: StubClassifier, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("GUARDBOT_CONFIG", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[[guards]]
name = "prompt_guard"
kind = "classifier"
stage = "both"
api = "tei"
url = "{stub.url}"
labels = {{ LABEL_1 = "prompt_injection" }}
threshold = 0.5

[[guards]]
name = "blocklist"
kind = "blocklist"
stage = "input"
words = ["nightjar"]
""",
        encoding="utf-8",
    )
    return path


def write_items(tmp_path: Path, items: list[dict[str, Any]]) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(it) for it in items) + "\n\n", encoding="utf-8")
    return path


def test_json_report_per_guard_overall_and_sweep(
    tmp_path: Path, config_file: Path, stub: StubClassifier, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_items(tmp_path, ITEMS)
    assert main(["--config", str(config_file), "eval", str(data), "--json", "--sweep"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["items"], report["safe"], report["unsafe"]) == (7, 3, 4)
    assert report["labels_matching_no_guard"] == {"harm": 1}

    clf = report["guards"]["prompt_guard"]  # fired: attack one, hello, broken (error)
    assert (clf["items"], clf["tp"], clf["fp"], clf["fn"], clf["errors"]) == (7, 1, 2, 1, 1)
    assert (clf["precision"], clf["recall"], clf["benign_fpr"]) == (0.3333, 0.5, 0.6667)
    block = report["guards"]["blocklist"]  # input stage only: the reply is not screened by it
    assert (block["items"], block["tp"], block["fp"], block["fn"]) == (6, 1, 0, 0)
    assert (block["precision"], block["recall"], block["benign_fpr"]) == (1.0, 1.0, 0.0)
    overall = report["overall"]  # unsafe: attack one/two, nightjar, the reply
    assert (overall["tp"], overall["fp"], overall["fn"]) == (2, 2, 2)
    assert (overall["precision"], overall["recall"], overall["benign_fpr"]) == (0.5, 0.5, 0.6667)

    sweep = {row["threshold"]: row for row in report["sweep"]["prompt_guard"]}
    assert sorted(sweep) == [0.0, 0.05, 0.1, 0.4, 0.6, 0.9]  # the scores it gave
    assert (sweep[0.4]["tp"], sweep[0.4]["fp"], sweep[0.4]["recall"]) == (2, 2, 1.0)
    assert (sweep[0.9]["tp"], sweep[0.9]["fp"], sweep[0.9]["benign_fpr"]) == (1, 1, 0.3333)
    results = {r["line"]: r for r in report["results"]}
    assert results[1]["scores"]["prompt_guard"] == 0.9 and results[1]["fired"] == ["prompt_guard"]
    assert results[6]["scores"]["prompt_guard"] is None
    assert len(stub.calls) == 7  # every item reached the classifier once


def test_sweep_points_limit_rows_and_keep_both_ends(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_items(tmp_path, ITEMS)
    argv = ["--config", str(config_file), "eval", str(data), "--json", "--sweep", "--points", "2"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["sweep"]["prompt_guard"]
    assert [r["threshold"] for r in rows] == [0.0, 0.9]


def test_table_output(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_items(tmp_path, ITEMS)
    assert main(["--config", str(config_file), "eval", str(data), "--sweep"]) == 0
    out = capsys.readouterr().out
    assert "7 items (3 safe, 4 unsafe)" in out
    assert "counted as unsafe overall only: harm (1)" in out
    [row] = [line for line in out.splitlines() if line.startswith("prompt_guard")]
    assert row.split()[1:] == [
        "classifier",
        "7",
        "2",
        "1",
        "2",
        "1",
        "0.333",
        "0.500",
        "0.667",
        "1",
    ]
    assert "sweep prompt_guard (configured threshold 0.5" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"text": "a", "label": "safe"}\n{"text": "b", "label": \n',
            "items.jsonl:2: not valid JSON",
        ),
        (b'\n{"label": "safe"}\n', 'items.jsonl:2: missing field "text"'),
        (b'{"text": "a"}\n', 'items.jsonl:1: missing field "label"'),
        (b'{"text": "a", "label": 1}\n', 'items.jsonl:1: "label" must be a non-empty string'),
        (b'{"text": " ", "label": "safe"}\n', 'items.jsonl:1: "text" must be a non-empty string'),
        (b'["a", "safe"]\n', "items.jsonl:1: expected a JSON object"),
        (b'{"text": "a", "label": "safe", "stage": "both"}\n', 'items.jsonl:1: "stage" must be'),
        (b'{"text": "\xff", "label": "safe"}\n', "items.jsonl:1: not UTF-8"),
        (b"\n\n", "items.jsonl: no items"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    tmp_path: Path,
    config_file: Path,
    stub: StubClassifier,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    data = tmp_path / "items.jsonl"
    data.write_bytes(content)
    assert main(["--config", str(config_file), "eval", str(data)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("guardbot eval: ") and message in line
    assert stub.calls == []  # nothing was screened


def test_missing_file(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_file), "eval", str(tmp_path / "nope.jsonl")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert (
        line == f"guardbot eval: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    )


def test_help_documents_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert '"safe" (or "benign")' in out and "--sweep" in out and "guard's name or kind" in out
