"""Chat models behind one protocol: OpenAI-compatible HTTP, offline echo, scripted."""

from middleware.llm.base import ChatModel, Completion, LLMError, Message, ModelSettings
from middleware.llm.echo import EchoModel
from middleware.llm.scripted import FunctionModel, ScriptedModel

__all__ = [
    "ChatModel",
    "Completion",
    "EchoModel",
    "FunctionModel",
    "LLMError",
    "Message",
    "ModelSettings",
    "ScriptedModel",
]
