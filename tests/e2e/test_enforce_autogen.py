"""`POST /v1/enforce` from an AutoGen tool: the wrapper in examples/autogen asks the gateway
before the tool runs; a call carrying tainted data is refused and audited."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import ToolCallSummaryMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_core.tools import FunctionTool

from conftest import REPO_ROOT, Gateway, autogen_client, inline_pack_gateway, unique

sys.path.insert(0, str(REPO_ROOT / "examples" / "autogen"))
from palisade_tools import EnforcedTool  # noqa: E402

pytestmark = pytest.mark.gateway

EMAIL = "ann.lee" + "@" + "example.org"
CRM_RECORD = f"{EMAIL} https://collect.example.net/x -- account owner, plan gold, renewal in May"

# The taint rule applies on the request side only (`phase: input`): the model's tool call is
# released, and the decision is taken when the tool asks `/v1/enforce` before running.
ENFORCE_PACK = """
pack: {name: e2e-enforce, version: "1.0"}
auth: required
on_block: completion
providers:
  - {name: mock, kind: mock, model: [gpt-4o]}
policies:
  chain: [pii-detector, agent-firewall]
policy:
  pii-detector: {action: log}
  agent-firewall:
    default: deny
    roles:
      researcher: {allowed_tools: [lookup_customer]}
      notifier: {allowed_tools: [post_webhook]}
tools:
  lookup_customer: {category: crm}
  post_webhook: {category: external_api}
rules:
  - name: no-tainted-data-to-external-apis
    condition: {action_type: tool_call, taint: {from: tool_output, to: external_api}}
    decision: BLOCK
    phase: input
    reason: Data from a tool result may not leave through an external API
"""


@pytest.fixture(scope="module")
def enforce_gateway(tmp_path_factory: pytest.TempPathFactory):
    yield from inline_pack_gateway(ENFORCE_PACK, "enforce", tmp_path_factory)



def test_enforced_tool_refuses_a_tainted_webhook_post(enforce_gateway: Gateway):
    gw = enforce_gateway
    workflow = unique("support")
    researcher, notifier = unique("researcher"), unique("notifier")
    researcher_key = gw.create_key(researcher, role="researcher", workflow=workflow)
    notifier_key = gw.create_key(notifier, role="notifier", workflow=workflow)
    posted: list[tuple[str, str]] = []

    async def lookup_customer(customer_id: str) -> str:
        """Look up a customer record in the CRM."""
        return CRM_RECORD

    async def post_webhook(url: str, body: str) -> str:
        """POST a message to a webhook."""
        posted.append((url, body))
        return "posted"

    webhook = EnforcedTool(
        FunctionTool(post_webhook, description="POST a message to a webhook"),
        base_url=gw.base_url,
        api_key=notifier_key,
    )
    task = f"Find customer 7 and tell the team ({unique('task')})."

    async def run() -> TaskResult:
        rc, nc = autogen_client(gw, researcher_key), autogen_client(gw, notifier_key)
        try:
            team = RoundRobinGroupChat(
                [
                    AssistantAgent(researcher, model_client=rc, tools=[lookup_customer], reflect_on_tool_use=True),
                    AssistantAgent(notifier, model_client=nc, tools=[webhook]),
                ],
                termination_condition=MaxMessageTermination(3),
            )
            return await team.run(task=task)
        finally:
            await rc.close()
            await nc.close()

    result = asyncio.run(run())
    assert posted == [], f"the wrapped tool must not run: {webhook.verdicts}"
    last = result.messages[-1]
    assert isinstance(last, ToolCallSummaryMessage) and last.source == notifier, result.messages
    assert last.content.startswith("[palisade] tool `post_webhook` was not run: Data from a tool result"), last.content
    assert len(webhook.verdicts) == 1
    verdict = webhook.verdicts[0]
    assert verdict["decision"] == "BLOCK" and verdict["allowed"] is False

    events = {ev["id"]: ev for ev in gw.audit_events()}
    ev = events[verdict["event_id"]]
    assert ev["request_kind"] == "tool_enforce"
    assert ev["agent"] == notifier
    assert ev["decision"] == "BLOCK"
    taint = next(v for v in ev["verdicts"] if v["rule"] == "no-tainted-data-to-external-apis")
    assert taint["findings"][0]["kind"] == "EMAIL_ADDRESS"
    # The conversation of the tool call is the notifier's (its model turn came first).
    turns = [e for e in events.values() if e["agent"] == notifier and e["request_kind"] == "chat_completion"]
    assert [t["conversation"] for t in turns] == [ev["conversation"]]

    # A clean call through the same wrapper runs the tool.
    out = asyncio.run(
        webhook.run_json({"url": "https://hooks.example.net/ok", "body": "all done"}, CancellationToken())
    )
    assert out == "posted"
    assert posted == [("https://hooks.example.net/ok", "all done")]


def test_enforce_rejects_bad_requests_and_unknown_keys(enforce_gateway: Gateway):
    gw = enforce_gateway
    key = gw.create_key(unique("notifier"), role="notifier")
    url = f"{gw.base_url}/enforce"
    r = httpx.post(url, json={"tool": "post_webhook", "arguments": {}}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = httpx.post(url, json={"tool": "", "arguments": {}}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool"
    r = httpx.post(url, json={"tool": "x", "arguments": [1]}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "arguments"
    r = httpx.post(url, json={"tool": "post_webhook", "arguments": {"body": "hi"}}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    v = r.json()
    assert (v["decision"], v["allowed"]) == ("ALLOW", True), v
    r = httpx.post(url, json={"tool": "lookup_customer", "arguments": {}}, headers={"Authorization": f"Bearer {key}"})
    v = r.json()
    assert (v["decision"], v["allowed"]) == ("BLOCK", False), v
    assert v["reasons"][0]["reason"].startswith("tool `lookup_customer` is not allowed for agent ")
