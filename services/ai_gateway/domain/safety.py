"""The safety policy applied to one call: what a verdict means for it (a block is recorded on the call, then
raised as SAFETY_BLOCKED naming the rule and the policy version)."""

from __future__ import annotations

from typing import Any, NoReturn

from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.policy import Direction, SafetyPolicy, Verdict
from services.common.errors import FailedPrecondition


def block(call: CallState[Any], verdict: Verdict, policy_version: str, direction: str = "") -> NoReturn:
    """Records the verdict on the call and raises SAFETY_BLOCKED; `direction` defaults to the rule's."""
    call.verdict = verdict
    raise FailedPrecondition(
        "SAFETY_BLOCKED",
        f"blocked by the safety policy ({call.prepared.category}, rule {verdict.rule_id}): {verdict.description}",
        metadata={
            "category": call.prepared.category,
            "rule_id": verdict.rule_id,
            "direction": direction or verdict.rule_id.split(".", 1)[0],
            "policy_version": policy_version,
        },
    )


async def check_input(policy: SafetyPolicy, call: CallState[Any]) -> None:
    texts = {"prompt": call.prepared.raw.prompt}
    if call.prepared.raw.system_prompt:
        texts["system_prompt"] = call.prepared.raw.system_prompt
    verdict = await policy.check_async(call.prepared.category, Direction.INPUT, texts)
    if not verdict.allowed:
        block(call, verdict, policy.version)


async def check_revised_prompt(policy: SafetyPolicy, call: CallState[Any], revised: str) -> None:
    """A provider's revision of the prompt is what the image was made from: it passes the category's input rules
    too, and a block names direction "revised_prompt"."""
    verdict = await policy.check_async(call.prepared.category, Direction.INPUT, {"revised_prompt": revised})
    if not verdict.allowed:
        block(call, verdict, policy.version, "revised_prompt")


async def check_output(policy: SafetyPolicy, call: CallState[Any], content: str) -> str:
    """The whole response against the output rules; returns it when allowed."""
    verdict = await policy.check_async(call.prepared.category, Direction.OUTPUT, {"response": content})
    if not verdict.allowed:
        block(call, verdict, policy.version)
    return content
