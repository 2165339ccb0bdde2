"""A block in the middle of a stream reaches real clients as a clean finish with a reason:
a last chunk with `finish_reason: "content_filter"`, then `data: [DONE]` — no hang, no
truncated JSON, and none of the forbidden bytes (see docs/streaming.md)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import ModelClientStreamingChunkEvent
from autogen_ext.models.openai import OpenAIChatCompletionClient

from conftest import Gateway, unique

pytestmark = pytest.mark.gateway

MODEL = "gpt-4o"


def fake_github_token() -> str:
    # Assembled at run time: no credential-shaped literal in the repository.
    return "ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6"


def echo_secret_messages(secret: str) -> list[dict[str, str]]:
    # The mock answers with the first 60 characters of the last message: the secret is among them.
    return [{"role": "user", "content": f"Echo {secret}"}]


def assert_secret_not_released(text: str, secret: str) -> None:
    assert secret not in text, "the secret was released"
    assert secret[4:20] not in text, "part of the secret was released"


def test_openai_sdk_stream_blocked_midway_ends_with_content_filter(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    key = gw.create_key(unique("sdk_streamer"), role="tester")
    secret = fake_github_token()
    c = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30.0)
    pieces: list[str] = []
    finish_reasons: list[str] = []
    for chunk in c.chat.completions.create(model=MODEL, messages=echo_secret_messages(secret), stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    text = "".join(pieces)
    assert finish_reasons == ["content_filter"], (finish_reasons, text)
    assert_secret_not_released(text, secret)
    assert "secrets-detector" in text, f"the last chunk says which policy blocked: {text!r}"


def test_raw_sse_of_a_blocked_stream_is_well_formed_and_ends_with_done(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    key = gw.create_key(unique("sse_streamer"), role="tester")
    secret = fake_github_token()
    body = {"model": MODEL, "messages": echo_secret_messages(secret), "stream": True}
    with httpx.stream(
        "POST",
        f"{gw.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30.0,
    ) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    assert_secret_not_released(raw, secret)
    data_lines = [line for line in raw.splitlines() if line.startswith("data:")]
    assert data_lines[-1].strip() == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data:").strip()) for line in data_lines[:-1]]
    finishes = [ch["choices"][0]["finish_reason"] for ch in chunks if ch.get("choices") and ch["choices"][0].get("finish_reason")]
    assert finishes == ["content_filter"], finishes


def test_non_streamed_output_block_is_403(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    key = gw.create_key(unique("json_caller"), role="tester")
    secret = fake_github_token()
    c = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30.0)
    with pytest.raises(openai.PermissionDeniedError) as err:
        c.chat.completions.create(model=MODEL, messages=echo_secret_messages(secret))
    body = err.value.response.json()
    assert body["error"]["type"] == "policy_violation"
    assert body["error"]["code"] == "secrets-detector"
    assert_secret_not_released(err.value.response.text, secret)


def test_autogen_streaming_agent_sees_a_clean_finish_on_a_midstream_block(stream_guard_gateway: Gateway):
    gw = stream_guard_gateway
    name = unique("guarded_streamer")
    key = gw.create_key(name, role="writer")
    secret = fake_github_token()

    async def run() -> tuple[list[str], TaskResult | None]:
        mc = OpenAIChatCompletionClient(model=MODEL, base_url=gw.base_url, api_key=key, max_retries=0, timeout=30.0)
        try:
            agent = AssistantAgent(name, model_client=mc, model_client_stream=True, system_message="Be brief.")
            chunks: list[str] = []
            result: TaskResult | None = None
            async for item in agent.run_stream(task=f"Echo {secret}"):
                if isinstance(item, ModelClientStreamingChunkEvent):
                    chunks.append(item.content)
                elif isinstance(item, TaskResult):
                    result = item
            return chunks, result
        finally:
            await mc.close()

    chunks, result = asyncio.run(run())
    assert result is not None, "the agent's run finished"
    final = result.messages[-1]
    assert final.source == name
    assert_secret_not_released("".join(chunks), secret)
    assert_secret_not_released(final.to_text(), secret)
    assert "secrets-detector" in final.to_text()
