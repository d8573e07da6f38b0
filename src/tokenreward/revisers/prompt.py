"""The reviser prompt of the TLCR paper (Appendix A, Figure 9) and the parser of its reply.

The reviser sees the dialogue context, the preferred (chosen) and the non-preferred
(rejected) response, explains why the rejected one is worse between the reasoning markers,
and writes a minimally edited rejected response between the modified-response markers.
"""

from __future__ import annotations

import re

from tokenreward.revisers.base import Revision
from tokenreward.rewards import TextOrMessages

START_REASONING, END_REASONING = "<|Start of Reasoning|>", "<|End of Reasoning|>"
START_MODIFIED, END_MODIFIED = "<|Start of Modified Response|>", "<|End of Modified Response|>"

TEMPLATE = """Below is an instruction that describes a task. Write a response that appropriately completes the request.

<|Start of Instruction|>
Given the dialogue context between the human and the assistant, you need to modify the given non-preferred to get a preferred reply from the assistant. Begin your answer with why the given non-preferred response is not preferred compared to the preferred response and how this can be improved. Output your editing by strictly following this format:
\u201c<|Start of Reasoning|>
{{reasoning_response}}
<|End of Reasoning|>

<|Start of Modified Response|>
{{modified_response}}
<|End of Modified Response|>\u201d
You must remain the original structure of the non-preferred response, ensure the edit distance between the modified response with the non-preferred response is as low as possible.
<|End of Instruction|>

<|Start of Context|>
{context}
<|End of Context|>

<|Start of Preferred Response|>
{chosen}
<|End of Preferred Response|>

<|Start of Non-Preferred Response|>
{rejected}
<|End of Non-Preferred Response|>"""

ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}


def render_context(prompt: TextOrMessages) -> str:
    """A plain prompt as is; a conversation as `###Human: ...` / `###Assistant: ...` lines."""
    if isinstance(prompt, str):
        return prompt.strip()
    return "\n".join(f"###{ROLE_NAMES.get(m['role'], m['role'].title())}: {m['content'].strip()}" for m in prompt)


def reviser_prompt(prompt: TextOrMessages, rejected: str, chosen: str) -> str:
    return TEMPLATE.format(context=render_context(prompt), chosen=chosen.strip(), rejected=rejected.strip())


def _between(text: str, start: str, end: str) -> str | None:
    match = re.search(re.escape(start) + r"(.*?)" + re.escape(end), text, flags=re.S)
    return match.group(1) if match else None


def parse_reply(reply: str, rejected: str) -> Revision:
    """The revision between the modified-response markers, or a failed `Revision` saying why.

    The reviser's text is stripped of surrounding whitespace and given the rejected
    response's own leading and trailing whitespace (e.g. the space after a prompt), so that
    layout around the markers is not counted as an edit."""
    if START_MODIFIED not in reply:
        return Revision(None, failure=f"reply has no {START_MODIFIED} marker", reply=reply)
    body = _between(reply, START_MODIFIED, END_MODIFIED)
    if body is None:
        return Revision(None, failure=f"reply has no {END_MODIFIED} after {START_MODIFIED}", reply=reply)
    body = body.strip()
    if not body or body == "{modified_response}":
        return Revision(None, failure="the modified response between the markers is empty", reply=reply)
    reasoning = _between(reply, START_REASONING, END_REASONING)
    lead = rejected[: len(rejected) - len(rejected.lstrip())]
    trail = rejected[len(rejected.rstrip()) :]
    return Revision(lead + body + trail, reasoning=reasoning.strip() if reasoning else None, reply=reply)
