"""Chat models behind one protocol: OpenAI-compatible HTTP, offline echo, scripted."""

from middleware.errors import LLMError
from middleware.llm.echo import EchoModel
from middleware.llm.model import ChatModel, Completion, Message, ModelSettings
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
