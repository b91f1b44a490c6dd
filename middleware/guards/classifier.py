"""``classifier``: a text classification model behind an inference server's HTTP API.

Production users run specialised classifiers (Llama Prompt Guard 2, toxicity
models) on Hugging Face text-embeddings-inference (``POST /predict``) or vLLM
(``POST /classify``). This guard sends the text, parses the answer strictly
into ``{label: probability}`` (a malformed or incomplete answer is an error,
so ``on_error`` decides, never a guess), and blocks when an unsafe label of
the ``labels`` map reaches its threshold. Every label's probability is kept in
the verdict's raw output for the audit and for ``guardbot eval --sweep``.

Each guard owns one aiohttp session (connection reuse matters at one request
per message). It is opened on the first check, inside the running loop, and
closed by :meth:`ClassifierGuard.aclose` or :func:`close_sessions`. A check
cancelled from outside (another guard blocked, a timeout) closes its HTTP
request, so the server stops work on it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import weakref
from typing import Any

import aiohttp

from middleware.errors import LLMError, VerdictParseError
from middleware.guards.config import ClassifierGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.types import Verdict

_RAW_LIMIT = 2000  # characters of a bad answer kept for the audit
_live: weakref.WeakSet[ClassifierGuard] = weakref.WeakSet()


class ClassifierGuard:
    local = False  # network I/O: screening runs it as a task, under its timeout
    offline = False

    def __init__(self, cfg: ClassifierGuardConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg
        base = cfg.url.rstrip("/")
        self.endpoint = f"{base}/predict" if cfg.api == "tei" else f"{base}/classify"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        _live.add(self)

    async def check(self, text: str, context: GuardContext) -> Verdict:
        body = await self._post(self._request_body(text))
        scores = parse_tei(body) if self.cfg.api == "tei" else parse_vllm(body, self._classes())
        missing = sorted(set(self.cfg.labels) - set(scores))
        if missing:
            raise VerdictParseError(f"the answer has no score for labels {missing}", _snippet(body))
        raw = json.dumps(scores, sort_keys=True)
        over = sorted(
            ((label, scores[label]) for label in self.cfg.labels
             if scores[label] >= self.cfg.threshold_for(label)),
            key=lambda item: -item[1],
        )  # fmt: skip
        top = max(scores[label] for label in self.cfg.labels)
        if over:
            reason = ", ".join(
                f"{label} {score:.2f} >= {self.cfg.threshold_for(label):g}" for label, score in over
            )
        else:
            reason = f"no unsafe label over its threshold (highest {top:.2f})"
        categories = dict.fromkeys(self.cfg.labels[label] for label, _ in over)
        result = verdict(
            self.name,
            context,
            unsafe=bool(over),
            category=",".join(categories),
            score=round(top, 4),  # the highest unsafe probability: what a threshold sweep moves
            reason=reason,
            raw=raw,
        )
        result.model = self.cfg.model
        return result

    def _request_body(self, text: str) -> dict[str, Any]:
        if self.cfg.api == "tei":
            # raw_scores false: probabilities (softmax), the scale thresholds are set on.
            return {"inputs": text, "raw_scores": False, "truncate": self.cfg.truncate}
        return {"model": self.cfg.model, "input": text}

    def _classes(self) -> list[str]:
        assert self.cfg.class_labels is not None  # the config requires it for vllm
        return self.cfg.class_labels

    async def _post(self, payload: dict[str, Any]) -> str:
        headers = {}
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise LLMError(f"the api_key_env variable {self.cfg.api_key_env} is unset")
            headers["Authorization"] = f"Bearer {key}"
        try:
            # Leaving this block by cancellation closes the connection (the answer
            # was not read to the end), so the server sees the client hang up.
            async with self._client().post(self.endpoint, json=payload, headers=headers) as resp:
                body = await resp.text(errors="replace")
                if resp.status != 200:
                    raise LLMError(f"classifier answered HTTP {resp.status}: {_snippet(body, 200)}")
                return body
        except aiohttp.ClientError as exc:
            raise LLMError(f"classifier request failed: {type(exc).__name__}: {exc}") from exc

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session belongs to one event loop; a guard reused under a new loop
            # (a second asyncio.run) needs a new one.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


async def close_sessions() -> None:
    """Close the HTTP sessions of every classifier guard (at shutdown)."""
    for guard in list(_live):
        await guard.aclose()


def parse_tei(body: str) -> dict[str, float]:
    """TEI ``/predict`` for one input: ``[{"label": str, "score": float}, ...]``."""
    data = _json(body)
    if not isinstance(data, list) or not data:
        raise VerdictParseError("expected a non-empty list of {label, score}", _snippet(body))
    scores: dict[str, float] = {}
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            raise VerdictParseError("an entry is not {label, score}", _snippet(body))
        label = item["label"]
        if label in scores:
            raise VerdictParseError(f"label {label!r} appears twice", _snippet(body))
        scores[label] = _probability(item.get("score"), label, body)
    return scores


def parse_vllm(body: str, classes: list[str]) -> dict[str, float]:
    """vLLM ``/classify`` for one input: ``{"data": [{"probs": [...], "label": ...}]}``.

    The probabilities come by class index, so ``classes`` names them; the
    answer's own predicted label must agree with that order, which catches a
    ``class_labels`` list that does not match the served model.
    """
    data = _json(body)
    results = data.get("data") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
        raise VerdictParseError("expected {data: [one result]}", _snippet(body))
    result = results[0]
    probs = result.get("probs")
    if not isinstance(probs, list) or len(probs) != len(classes):
        raise VerdictParseError(
            f"expected probs for {len(classes)} classes (class_labels)", _snippet(body)
        )
    if result.get("num_classes", len(probs)) != len(probs):
        raise VerdictParseError("num_classes does not match probs", _snippet(body))
    scores = {name: _probability(p, name, body) for name, p in zip(classes, probs, strict=True)}
    predicted = result.get("label")
    if predicted is not None:
        if not isinstance(predicted, str) or predicted not in scores:
            raise VerdictParseError(
                f"predicted label {predicted!r} is not in class_labels", _snippet(body)
            )
        if scores[predicted] < max(scores.values()):
            raise VerdictParseError(
                f"predicted label {predicted!r} is not the most probable class: "
                "class_labels are not in the model's order",
                _snippet(body),
            )
    return scores


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise VerdictParseError("the answer is not JSON", _snippet(body)) from None


def _probability(value: object, label: str, body: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VerdictParseError(f"score of {label!r} is not a number", _snippet(body))
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise VerdictParseError(f"score of {label!r} is not a probability", _snippet(body))
    return float(value)


def _snippet(body: str, limit: int = _RAW_LIMIT) -> str:
    return body if len(body) <= limit else body[:limit] + "..."
