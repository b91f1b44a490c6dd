"""Model errors an operator can act on: the URL, the status, the body and the likely fix.

The real `openai` client against the stub server on 127.0.0.1: a base_url
without /v1 (404), a web page answering 200, a 500 with a body. The user's
reply says only that the model could not answer; the detail is in the
decision (and so in `guardbot show`). A missing key is warned about at start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config.providers import ModelProvider
from bot.config.schema import parse_config
from middleware.errors import LLMError
from middleware.llm.model import Message, ModelSettings
from middleware.llm.openai_model import OpenAIChatModel
from middleware.types import Action
from tests.middleware.test_llm_hostile import one_message
from tests.stubs.openai_server import Reply, StubOpenAI

HELLO = [Message(role="user", content="hello")]
PAGE = "<!DOCTYPE html><html><head><title>Ollama</title></head><body>It works</body></html>"


async def error_of(base_url: str) -> str:
    model = OpenAIChatModel(model="m", api_key=None, base_url=base_url, max_retries=0)
    try:
        with pytest.raises(LLMError) as caught:
            await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    finally:
        await model.close()
    return str(caught.value)


async def test_a_base_url_without_v1_names_the_url_the_status_and_the_fix(
    stub_llm: StubOpenAI,
) -> None:
    root = stub_llm.base_url.removesuffix("/v1")
    message = await error_of(root)
    assert "HTTP 404" in message
    assert f"POST {root}/chat/completions" in message
    assert "Not Found" in message  # the start of the body
    assert f'did you mean base_url = "{root}/v1"?' in message


async def test_an_html_page_with_status_200_says_so(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(raw_body=PAGE, content_type="text/html")
    message = await error_of(stub_llm.base_url)
    assert "HTTP 200 with an HTML page, not JSON" in message
    assert "<!DOCTYPE html><html><head><title>Ollama" in message
    assert "returned no choices" not in message


async def test_the_body_of_a_500_is_kept_in_the_decision_not_in_the_reply(
    stub_llm: StubOpenAI, tmp_path: Path
) -> None:
    stub_llm.script = lambda _r: Reply(status=500, raw_body='{"error": "CUDA out of memory"}')
    decision = await one_message(stub_llm, tmp_path, "max_retries = 0")
    assert decision.action is Action.ERROR
    assert "HTTP" not in decision.reply and "500" not in decision.reply
    assert "the model could not answer" in decision.reply
    assert decision.error is not None
    assert "HTTP 500" in decision.error and "CUDA out of memory" in decision.error
    assert stub_llm.base_url in decision.error


def test_provider_openai_without_a_key_warns_at_start() -> None:
    config = parse_config('[llm]\nprovider = "openai"\n', "test")
    notice = ModelProvider(config.llm, env={}).notice()
    assert notice is not None and "$OPENAI_API_KEY is not set" in notice
    assert ModelProvider(config.llm, env={"OPENAI_API_KEY": "sk-x"}).notice() is None
    local = parse_config('[llm]\nprovider = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n', "t")
    assert ModelProvider(local.llm, env={}).notice() is None  # a local server needs no key
