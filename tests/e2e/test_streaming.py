"""Streaming guardrails (issue 8) with real clients: the `openai` SDK and an AutoGen agent with
`model_client_stream=True` stream through the gateway unchanged, and an output block mid-stream
reaches them as a clean finish (`finish_reason: content_filter`) with a reason.

Uses `packs/e2e-stream-guard.yaml`: the secrets detector scans only the output (window mode)
and blocks. The mock provider echoes the user's message, so a message carrying a token passes
the input phase and the block happens on the streamed answer."""

from __future__ import annotations

import asyncio

import openai
import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import ModelClientStreamingChunkEvent, TextMessage
from autogen_ext.models.openai import OpenAIChatCompletionClient

from conftest import Gateway, mock_reply, unique

MODEL = "gpt-4o"


def token() -> str:
    """A GitHub-token-shaped value, assembled at run time (no credential literal in the repo)."""
    return "ghp_" + "".join("Q7wE2rT9yU4iO1pA8sD5fG3hJ6kL0zXcVbNm"[i] for i in range(36))


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30.0)


def stream_text(gw: Gateway, key: str, text: str) -> tuple[str, list[str | None], int]:
    chunks = client(gw, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], stream=True
    )
    content, finishes, n = "", [], 0
    for c in chunks:
        n += 1
        for ch in c.choices:
            content += ch.delta.content or ""
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
    return content, finishes, n


@pytest.mark.gateway
def test_openai_sdk_streams_a_clean_answer_unchanged(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    key = gw.create_key(unique("sdk_streamer"), role="writer")
    text = f"Tell me about {unique('rivers')} please."
    content, finishes, n = stream_text(gw, key, text)
    assert content == mock_reply(text)
    assert finishes == ["stop"]
    assert n >= 3


@pytest.mark.gateway
def test_openai_sdk_gets_a_clean_content_filter_finish_on_a_mid_stream_block(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    name = unique("sdk_leaker")
    key = gw.create_key(name, role="writer")
    secret = token()
    content, finishes, _ = stream_text(gw, key, f"echo {secret}")
    assert finishes == ["content_filter"]
    assert secret not in content
    assert secret[:8] not in content
    assert "[palisade] blocked by policy `secrets-detector`" in content

    events = [ev for ev in gw.audit_events() if ev["agent"] == name]
    assert len(events) == 1, events
    assert events[0]["outcome"]["kind"] == "blocked", events[0]["outcome"]
    stats = events[0]["stream_stats"]
    # The answer is shorter than the secrets window: nothing was released before the verdict.
    assert stats["bytes_released"] == 0
    assert stats["bytes_released_before_verdict"] == 0
    assert stats["output_scan_completed"] is True


def run_agent(gw: Gateway, name: str, key: str, task: str) -> tuple[list[str], TaskResult | None]:
    async def run() -> tuple[list[str], TaskResult | None]:
        mc = OpenAIChatCompletionClient(model=MODEL, base_url=gw.base_url, api_key=key, max_retries=0, timeout=30.0)
        try:
            agent = AssistantAgent(name, model_client=mc, model_client_stream=True, system_message="Be brief.")
            chunks: list[str] = []
            result: TaskResult | None = None
            async for item in agent.run_stream(task=task):
                if isinstance(item, ModelClientStreamingChunkEvent):
                    chunks.append(item.content)
                elif isinstance(item, TaskResult):
                    result = item
            return chunks, result
        finally:
            await mc.close()

    return asyncio.run(run())


@pytest.mark.gateway
def test_autogen_streaming_agent_streams_through_the_scanner(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    name = unique("ag_streamer")
    key = gw.create_key(name, role="writer")
    task = f"Write a line about {unique('streams')}."
    chunks, result = run_agent(gw, name, key, task)
    assert result is not None
    final = result.messages[-1]
    assert isinstance(final, TextMessage)
    assert final.content == "".join(chunks) == mock_reply(task)


@pytest.mark.gateway
def test_autogen_streaming_agent_sees_a_block_as_a_clean_finish(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    name = unique("ag_leaker")
    key = gw.create_key(name, role="writer")
    secret = token()
    chunks, result = run_agent(gw, name, key, f"echo {secret}")
    assert result is not None
    final = result.messages[-1]
    assert isinstance(final, TextMessage)
    assert secret not in final.content
    assert "[palisade] blocked by policy `secrets-detector`" in final.content
