"""The safety policy applied to one call: what a verdict means for it (a block is recorded on the call, then
raised as SAFETY_BLOCKED naming the rule and the policy version)."""

from __future__ import annotations

from typing import NoReturn

from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.policy import Direction, SafetyPolicy, Verdict
from services.common.errors import FailedPrecondition


def block(call: CallState, verdict: Verdict, policy_version: str) -> NoReturn:
    call.verdict = verdict
    raise FailedPrecondition(
        "SAFETY_BLOCKED",
        f"blocked by the safety policy ({call.prepared.category}, rule {verdict.rule_id}): {verdict.description}",
        metadata={
            "category": call.prepared.category,
            "rule_id": verdict.rule_id,
            "direction": verdict.rule_id.split(".", 1)[0],
            "policy_version": policy_version,
        },
    )


async def check_input(policy: SafetyPolicy, call: CallState) -> None:
    texts = {"prompt": call.prepared.raw.prompt}
    if call.prepared.raw.system_prompt:
        texts["system_prompt"] = call.prepared.raw.system_prompt
    verdict = await policy.check_async(call.prepared.category, Direction.INPUT, texts)
    if not verdict.allowed:
        block(call, verdict, policy.version)


async def check_output(policy: SafetyPolicy, call: CallState, content: str) -> str:
    """The whole response against the output rules; returns it when allowed."""
    verdict = await policy.check_async(call.prepared.category, Direction.OUTPUT, {"response": content})
    if not verdict.allowed:
        block(call, verdict, policy.version)
    return content
