"""AutoGen through the gateway, unchanged: each agent's model client gets the gateway's
`base_url` and that agent's own Palisade key; nothing else in the agents changes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import ModelClientStreamingChunkEvent, TextMessage, ToolCallSummaryMessage
from autogen_agentchat.teams import RoundRobinGroupChat

from conftest import Gateway, autogen_client, mock_reply, unique




def edges(ev: dict[str, Any]) -> set[tuple[str, str]]:
    """The sender -> recipient edges of an audit event."""
    return {(e["from"], e["to"]) for e in ev["edges"]}


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.gateway
def test_round_robin_team_with_own_keys_runs_to_termination_and_is_audited(gateway: Gateway):
    planner, critic = unique("planner"), unique("critic")
    workflow = unique("team")
    planner_key = gateway.create_key(planner, role="planner", workflow=workflow)
    critic_key = gateway.create_key(critic, role="critic", workflow=workflow)
    assert planner_key != critic_key
    task = f"Plan a three-step launch checklist for project {unique('launch')}."

    async def run() -> TaskResult:
        planner_client = autogen_client(gateway, planner_key)
        critic_client = autogen_client(gateway, critic_key)
        try:
            team = RoundRobinGroupChat(
                [
                    AssistantAgent(planner, model_client=planner_client, system_message="You plan. Be brief."),
                    AssistantAgent(critic, model_client=critic_client, system_message="You critique. Be brief."),
                ],
                termination_condition=MaxMessageTermination(5),
            )
            return await team.run(task=task)
        finally:
            await planner_client.close()
            await critic_client.close()

    result = asyncio.run(run())

    # The team ran to its termination condition: task + planner, critic, planner, critic.
    assert [m.source for m in result.messages] == ["user", planner, critic, planner, critic]
    assert result.stop_reason and "5" in result.stop_reason, result.stop_reason
    # Each agent answered the previous speaker, and the gateway passed the answers on unchanged.
    expected = [task]
    for prev_source in ["user", planner, critic, planner]:
        expected.append(mock_reply(expected[-1], to=prev_source))
    assert all(isinstance(m, TextMessage) for m in result.messages)
    assert [m.content for m in result.messages] == expected

    # The store shows both agents, one conversation, and the agent-to-agent edges.
    events = [ev for ev in gateway.audit_events() if ev["agent"] in (planner, critic)]
    assert sorted(ev["agent"] for ev in events) == sorted([planner, planner, critic, critic]), events
    conversations = {ev["conversation"] for ev in events}
    assert len(conversations) == 1 and None not in conversations, conversations
    assert all(ev["decision"] == "ALLOW" for ev in events), [ev["decision"] for ev in events]
    assert all(ev["outcome"]["kind"] == "forwarded" for ev in events), [ev["outcome"] for ev in events]
    assert {ev["workflow"] for ev in events} == {workflow}

    # Turn by turn (in chain order): who wrote the messages each caller received since its own
    # last message. AutoGen names every message it forwards by its source (the task's is `user`).
    events.sort(key=lambda ev: ev["seq"])
    assert [ev["agent"] for ev in events] == [planner, critic, planner, critic]
    assert [edges(ev) for ev in events] == [
        {("user", planner)},
        {("user", critic), (planner, critic)},
        {(critic, planner)},
        {(planner, critic)},
    ]
    assert [ev["sender_agents"] for ev in events] == [["user"], ["user", planner], ["user", critic], ["user", planner]]


def test_streaming_assistant_agent_streams_through_the_gateway(gateway: Gateway):
    name = unique("streamer")
    key = gateway.create_key(name, role="writer")
    task = f"Write a haiku about {unique('streams')} and rivers."

    async def run() -> tuple[list[str], TaskResult | None]:
        mc = autogen_client(gateway, key)
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

    chunks, result = asyncio.run(run())
    assert result is not None
    assert len(chunks) >= 2, f"expected several streamed chunks, got {chunks!r}"
    final = result.messages[-1]
    assert isinstance(final, TextMessage)
    assert final.source == name
    assert final.content == "".join(chunks)
    assert final.content == mock_reply(task)

    if gateway.is_gateway:
        events = [ev for ev in gateway.audit_events() if ev["agent"] == name]
        assert len(events) == 1, events
        assert events[0]["stream"] is True
        assert events[0]["decision"] == "ALLOW"
        assert events[0]["outcome"]["kind"] == "forwarded", events[0]["outcome"]


def test_tool_using_assistant_agent_works_through_the_gateway(gateway: Gateway):
    name = unique("tool_user")
    key = gateway.create_key(name, role="assistant")
    calls: list[str] = []

    async def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"18 degrees and sunny in {city}"

    async def run() -> TaskResult:
        mc = autogen_client(gateway, key)
        try:
            agent = AssistantAgent(name, model_client=mc, tools=[get_weather], reflect_on_tool_use=True)
            return await agent.run(task=f"What is the weather in Paris? ({unique('weather')})")
        finally:
            await mc.close()

    result = asyncio.run(run())
    assert calls == ["mock-city"], "the mock's tool call reached the tool exactly once"
    final = result.messages[-1]
    assert not isinstance(final, ToolCallSummaryMessage), "reflect_on_tool_use asks the model for a final answer"
    assert isinstance(final, TextMessage)
    assert final.content == mock_reply("18 degrees and sunny in mock-city")
