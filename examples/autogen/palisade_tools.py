"""Palisade tool enforcement for AutoGen.

Wrap any AutoGen tool (e.g. a ``FunctionTool``) in :class:`EnforcedTool`: before the tool
runs, the wrapper asks the gateway ``POST /v1/enforce`` with the agent's own Palisade key.
The gateway evaluates the call with the same rules, agent firewall, taint tracking and
approvals as model traffic, records it in the audit chain, and answers
``{"decision", "allowed", "reasons", "event_id", ...}``. The tool runs only when
``allowed`` is true; otherwise the agent gets a short explanation as the tool result (or a
:class:`ToolBlocked` exception with ``raise_on_block=True``), so a group chat can go on.

A held approval (``CONSTRAIN`` with ``require_approval``) keeps the call waiting until a
human decides (``palisade approvals approve ID``), so give the HTTP client a timeout longer
than the pack's ``timeout_seconds``.

Example::

    from autogen_core.tools import FunctionTool
    from palisade_tools import EnforcedTool

    async def post_webhook(url: str, body: str) -> str:
        ...

    tool = EnforcedTool(
        FunctionTool(post_webhook, description="POST a message to a webhook"),
        base_url="http://127.0.0.1:4100/v1",
        api_key=notifier_key,
    )
    agent = AssistantAgent("notifier", model_client=client, tools=[tool])
"""

from __future__ import annotations

from typing import Any, Mapping

import httpx
from autogen_core import CancellationToken
from autogen_core.tools import BaseTool
from pydantic import BaseModel

__all__ = ["EnforcedTool", "ToolBlocked", "enforce"]


class ToolBlocked(RuntimeError):
    """Raised (with ``raise_on_block=True``) when the gateway does not allow a tool call."""

    def __init__(self, tool: str, verdict: Mapping[str, Any]) -> None:
        self.tool = tool
        self.verdict = dict(verdict)
        super().__init__(describe(tool, verdict))


def describe(tool: str, verdict: Mapping[str, Any]) -> str:
    """One line saying why the gateway did not allow the call."""
    all_reasons = verdict.get("reasons", [])
    reasons = [r.get("reason", "") for r in all_reasons if r.get("decision") == "BLOCK"] or [
        r.get("reason", "") for r in all_reasons if r.get("decision") != "ALLOW"
    ]
    approval = verdict.get("approval") or {}
    if approval.get("status") == "pending":
        reasons.append(f"approval `{approval.get('id')}` is pending; retry once it is approved")
    why = "; ".join(r for r in reasons if r) or verdict.get("decision", "BLOCK")
    return f"[palisade] tool `{tool}` was not run: {why} (audit event {verdict.get('event_id')})"


async def enforce(
    base_url: str,
    api_key: str,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    call_id: str | None = None,
    conversation_id: str | None = None,
    timeout: float = 330.0,
) -> dict[str, Any]:
    """Asks the gateway whether ``tool`` may run with ``arguments``; returns its answer."""
    body: dict[str, Any] = {"tool": tool, "arguments": dict(arguments)}
    if call_id:
        body["call_id"] = call_id
    if conversation_id:
        body["conversation_id"] = conversation_id
    async with httpx.AsyncClient(timeout=timeout) as client:
        res = await client.post(
            f"{base_url.rstrip('/')}/enforce",
            json=body,
            headers={"Authorization": f"Bearer {api_key}"},
        )
    if res.status_code != 200:
        # Fail closed: an unreachable or refusing gateway never lets the tool run.
        return {
            "decision": "BLOCK",
            "allowed": False,
            "reasons": [{"decision": "BLOCK", "reason": f"enforce answered {res.status_code}: {res.text[:200]}"}],
            "event_id": None,
        }
    return res.json()


class EnforcedTool(BaseTool[BaseModel, Any]):
    """An AutoGen tool that asks the Palisade gateway before its wrapped tool runs."""

    def __init__(
        self,
        tool: BaseTool[Any, Any],
        *,
        base_url: str,
        api_key: str,
        conversation_id: str | None = None,
        raise_on_block: bool = False,
        timeout: float = 330.0,
    ) -> None:
        super().__init__(tool.args_type(), tool.return_type(), tool.name, tool.description)
        self._tool = tool
        self._base_url = base_url
        self._api_key = api_key
        self._conversation_id = conversation_id
        self._raise_on_block = raise_on_block
        self._timeout = timeout
        self.verdicts: list[dict[str, Any]] = []

    @property
    def schema(self):  # type: ignore[override]
        return self._tool.schema

    def return_value_as_string(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return self._tool.return_value_as_string(value)

    async def _allowed(self, args: Mapping[str, Any], call_id: str | None) -> tuple[bool, str]:
        verdict = await enforce(
            self._base_url,
            self._api_key,
            self.name,
            args,
            call_id=call_id,
            conversation_id=self._conversation_id,
            timeout=self._timeout,
        )
        self.verdicts.append(verdict)
        if verdict.get("allowed"):
            return True, ""
        if self._raise_on_block:
            raise ToolBlocked(self.name, verdict)
        return False, describe(self.name, verdict)

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        ok, why = await self._allowed(args.model_dump(), None)
        if not ok:
            return why
        return await self._tool.run(args, cancellation_token)

    async def run_json(
        self, args: Mapping[str, Any], cancellation_token: CancellationToken, call_id: str | None = None
    ) -> Any:
        ok, why = await self._allowed(args, call_id)
        if not ok:
            return why
        return await self._tool.run_json(args, cancellation_token, call_id=call_id)
