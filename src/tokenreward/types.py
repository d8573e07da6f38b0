"""The plain types everything speaks: texts or chat conversations, and character offsets."""

from __future__ import annotations

from typing import Union

Message = dict[str, str]  # {"role": ..., "content": ...}
Conversation = list[Message]
TextOrMessages = Union[str, Conversation]
Offsets = list[tuple[int, int]]  # per token, [start, end) character offsets into the response
