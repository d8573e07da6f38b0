"""A local Hugging Face causal LM as the reviser (greedy decoding of the TLCR Appendix A prompt).

The prompt goes through the tokenizer's chat template as one user message when it has one,
otherwise it is used as plain text. Requests are generated in left-padded batches; a request
whose prompt does not fit the model's context is recorded as failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from tokenreward.encoding import has_chat_template
from tokenreward.errors import UserInputError
from tokenreward.generation import encode_prompt
from tokenreward.models import PathOrModel, context_length, default_device, load_causal_lm, load_tokenizer
from tokenreward.revisers.base import Reviser, Revision, RevisionRequest, register_reviser
from tokenreward.revisers.prompt import parse_reply, reviser_prompt


@register_reviser("hf")
class HFReviser(Reviser):
    def __init__(
        self,
        model: PathOrModel,
        tokenizer: PathOrModel | None = None,
        max_new_tokens: int = 512,
        batch_size: int = 4,
        device: str | None = None,
    ):
        if tokenizer is None and not isinstance(model, (str, Path)):
            raise UserInputError("hf reviser: pass `tokenizer` when the model is given as a loaded object")
        self.device = torch.device(device) if device else default_device()
        self.model = load_causal_lm(model, self.device).eval()
        self.tokenizer = load_tokenizer(tokenizer if tokenizer is not None else model)
        if self.tokenizer.pad_token_id is None:
            raise UserInputError("hf reviser: the tokenizer has no pad token; set one (e.g. its EOS)")
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def prompt_ids(self, request: RevisionRequest) -> list[int]:
        """The Appendix A prompt as one user turn of the chat template, or as plain text."""
        text = reviser_prompt(request.prompt, request.rejected, request.chosen)
        return encode_prompt(self.tokenizer, text, chat_template=has_chat_template(self.tokenizer))

    @torch.no_grad()
    def revise_batch(self, requests: Sequence[RevisionRequest]) -> list[Revision]:
        limit = context_length(self.model)
        rows = [self.prompt_ids(r) for r in requests]
        results: list[Revision | None] = [None] * len(requests)
        todo = []
        for k, ids in enumerate(rows):
            if limit is not None and len(ids) + 1 > limit:
                results[k] = Revision(
                    None, failure=f"reviser prompt is {len(ids)} tokens; the model's context is {limit}"
                )
            else:
                todo.append(k)
        if todo:
            width = max(len(rows[k]) for k in todo)
            new_tokens = self.max_new_tokens if limit is None else min(self.max_new_tokens, limit - width)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([[pad] * (width - len(rows[k])) + rows[k] for k in todo], device=self.device)
            attention = torch.tensor(
                [[0] * (width - len(rows[k])) + [1] * len(rows[k]) for k in todo], device=self.device
            )
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
            replies = self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
            for k, reply in zip(todo, replies):
                results[k] = parse_reply(reply, requests[k].rejected)
        return results
