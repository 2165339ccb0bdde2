"""Cost attribution through the gateway: an AutoGen group chat of three agents, each with its
own key; `palisade cost report` attributes every turn to the agent that spent it and all turns
to one conversation, consistent with the audit events."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_ext.models.openai import OpenAIChatCompletionClient

from conftest import Gateway, unique


def report(gw: Gateway, by: str) -> list[dict[str, Any]]:
    out = gw.cli("cost", "report", "--by", by, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["rows"]


def rows_for(gw: Gateway, by: str, keys: set[str], expected_requests: int) -> dict[str, dict[str, Any]]:
    """The report rows for `keys`, once the ledger writer committed all `expected_requests`
    (it batches in the background: a bounded wait for the rows, not a sleep for time)."""
    deadline = time.monotonic() + 10
    while True:
        rows = {r[by]: r for r in report(gw, by) if r.get(by) in keys}
        if sum(r["requests"] for r in rows.values()) >= expected_requests or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.mark.gateway
def test_three_agent_group_chat_is_attributed_per_agent_and_to_one_conversation(gateway: Gateway):
    names = [unique("researcher"), unique("writer"), unique("reviewer")]
    keys = {n: gateway.create_key(n, role=n.split("_")[0]) for n in names}
    task = f"Prepare a short market note on {unique('widgets')}."

    async def run() -> None:
        clients = [
            OpenAIChatCompletionClient(model="gpt-4o", base_url=gateway.base_url, api_key=keys[n], max_retries=0)
            for n in names
        ]
        try:
            team = RoundRobinGroupChat(
                [AssistantAgent(n, model_client=c, system_message=f"You are {n}.") for n, c in zip(names, clients)],
                termination_condition=MaxMessageTermination(7),
            )
            await team.run(task=task)
        finally:
            for c in clients:
                await c.close()

    asyncio.run(run())

    by_agent = rows_for(gateway, "agent", set(names), 6)
    assert {n: by_agent[n]["requests"] for n in names} == {n: 2 for n in names}, by_agent
    for n in names:
        row = by_agent[n]
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0, row
        assert float(row["cost_usd"]) > 0, row  # the mock model has a price: cost is never silently 0

    events = [ev for ev in gateway.audit_events() if ev["agent"] in names]
    conversations = {ev["conversation"] for ev in events}
    assert len(conversations) == 1, conversations
    (conversation,) = conversations

    by_conv = rows_for(gateway, "conversation", {conversation}, 6)
    assert by_conv[conversation]["requests"] == 6, by_conv
    total_by_agent = sum(float(by_agent[n]["cost_usd"]) for n in names)
    assert abs(float(by_conv[conversation]["cost_usd"]) - total_by_agent) < 1e-12
