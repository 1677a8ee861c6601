"""Safety tests that go through the chat page need the chat fixtures (a study whose arms talk to
a loopback OpenAI-compatible server)."""

from tests.chat.conftest import chat_study, loopback_endpoint, upstream  # noqa: F401
