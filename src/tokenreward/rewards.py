"""The token-reward type and the rewarder interface.

Everything in tokenreward meets at `TokenRewards`: for a batch of responses, a padded float
tensor `rewards[batch, response_len]` with a boolean `mask`, and per response its tokens (the
substrings of the response), their character offsets into the response string, and the
sequence reward. Rewarders produce it; PPO consumes it; `bench credit` scores it against the
world's ground truth; the heatmaps draw it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokenreward.errors import InputTypeError, NonFiniteError, UserInputError
from tokenreward.options import annotation_kinds, option_problem, typed_value
from tokenreward.registry import Registry
from tokenreward.types import Conversation, Message, Offsets, TextOrMessages  # noqa: F401  (re-exported)


@dataclass
class TokenRewards:
    """Per-token rewards for a batch of responses.

    `rewards[i, t]` is the reward of token `t` of response `i` (zero where `mask` is False);
    `offsets[i][t] = (start, end)` indexes into `responses[i]`; `tokens[i][t]` is
    `responses[i][start:end]`; `sequence_rewards[i]` is the holistic score the tokens share;
    `step_scores[i]` (None for rewarders without steps) the scores of response `i`'s steps.
    """

    rewarder: str
    responses: list[str]
    offsets: list[Offsets]
    rewards: torch.Tensor
    mask: torch.Tensor
    sequence_rewards: torch.Tensor
    step_scores: list[list[float]] | None = None

    @classmethod
    def from_lists(
        cls,
        rewarder: str,
        responses: Sequence[str],
        offsets: Sequence[Offsets],
        rewards: Sequence[Sequence[float] | torch.Tensor],
        sequence_rewards: Sequence[float] | torch.Tensor,
        step_scores: Sequence[Sequence[float]] | None = None,
    ) -> TokenRewards:
        """Pad per-response lists into the batch tensors; refuse NaN/inf and ragged input."""
        if not (len(responses) == len(offsets) == len(rewards) == len(sequence_rewards)):
            raise UserInputError(f"{rewarder}: responses, offsets, rewards and sequence rewards differ in length")
        if step_scores is not None and len(step_scores) != len(responses):
            raise UserInputError(f"{rewarder}: {len(step_scores)} step-score lists for {len(responses)} responses")
        width = max((len(r) for r in rewards), default=0)
        padded = torch.zeros(len(rewards), width, dtype=torch.float32)
        mask = torch.zeros(len(rewards), width, dtype=torch.bool)
        for i, (row, offs) in enumerate(zip(rewards, offsets)):
            row = torch.as_tensor(row, dtype=torch.float32).detach().cpu().reshape(-1)
            if row.numel() != len(offs):
                raise UserInputError(f"{rewarder}: response {i} has {row.numel()} rewards for {len(offs)} tokens")
            padded[i, : row.numel()] = row
            mask[i, : row.numel()] = True
        seq = torch.as_tensor(sequence_rewards, dtype=torch.float32).detach().cpu().reshape(-1)
        steps = None if step_scores is None else [[float(v) for v in row] for row in step_scores]
        result = cls(rewarder, list(responses), [list(map(tuple, o)) for o in offsets], padded, mask, seq, steps)
        result.check_finite()
        return result

    def project(self, offsets: Sequence[Offsets], combine: str = "sum") -> TokenRewards:
        """The same rewards on other tokens of the same responses (e.g. the policy's): response i's
        rewards land on the tokens of `offsets[i]` by characters (`align.project_rewards`,
        sum-preserving with `combine="sum"`); the sequence rewards are kept."""
        from tokenreward.align import project_rewards

        if len(offsets) != len(self):
            raise UserInputError(f"{self.rewarder}: {len(offsets)} offset lists for {len(self)} responses")
        rows = [
            project_rewards(self.offsets[i], self.token_rewards(i), list(offsets[i]), len(self.responses[i]), combine)
            for i in range(len(self))
        ]
        return TokenRewards.from_lists(
            self.rewarder, self.responses, offsets, rows, self.sequence_rewards, self.step_scores
        )

    def padded(self, width: int) -> torch.Tensor:
        """The rewards `[B, width]`, zero past each response's tokens (`width` >= the longest)."""
        if width < self.rewards.shape[1]:
            raise UserInputError(
                f"{self.rewarder}: width {width} is shorter than the longest response ({self.rewards.shape[1]} tokens)"
            )
        return torch.nn.functional.pad(self.rewards * self.mask, (0, width - self.rewards.shape[1]))

    def padded_mask(self, width: int) -> torch.Tensor:
        """The mask `[B, width]` matching `padded(width)`."""
        return torch.nn.functional.pad(self.mask, (0, width - self.mask.shape[1]))

    def __len__(self) -> int:
        return len(self.responses)

    def tokens(self, i: int) -> list[str]:
        return [self.responses[i][s:e] for s, e in self.offsets[i]]

    def token_rewards(self, i: int) -> list[float]:
        return self.rewards[i, self.mask[i]].tolist()

    def check_finite(self) -> None:
        """Raise naming the response and token if any reward is NaN or infinite."""
        bad = ~torch.isfinite(self.rewards) & self.mask
        if bad.any():
            i, t = (int(v) for v in bad.nonzero()[0])
            raise NonFiniteError(
                f"{self.rewarder}: reward {float(self.rewards[i, t])} (not finite) at response {i}, token {t} "
                f"{self.tokens(i)[t]!r}"
            )
        bad_seq = ~torch.isfinite(self.sequence_rewards)
        if bad_seq.any():
            i = int(bad_seq.nonzero()[0])
            raise NonFiniteError(
                f"{self.rewarder}: sequence reward {float(self.sequence_rewards[i])} (not finite) at response {i}"
            )

    def record(self, i: int) -> dict[str, Any]:
        """The JSON contract of `tokenreward score` for response `i` (`step_scores` only from a rewarder with steps)."""
        record = {
            "rewarder": self.rewarder,
            "sequence_reward": float(self.sequence_rewards[i]),
            "tokens": self.tokens(i),
            "offsets": [[int(s), int(e)] for s, e in self.offsets[i]],
            "rewards": [float(v) for v in self.token_rewards(i)],
        }
        if self.step_scores is not None:
            record["step_scores"] = list(self.step_scores[i])
        return record

    def records(self) -> list[dict[str, Any]]:
        return [self.record(i) for i in range(len(self))]

    def take(self, index: Sequence[int]) -> TokenRewards:
        """The responses at `index`, in that order."""
        return TokenRewards.from_lists(
            self.rewarder,
            [self.responses[i] for i in index],
            [self.offsets[i] for i in index],
            [self.rewards[i, self.mask[i]] for i in index],
            self.sequence_rewards[list(index)],
            None if self.step_scores is None else [self.step_scores[i] for i in index],
        )

    @classmethod
    def concat(cls, parts: Sequence[TokenRewards]) -> TokenRewards:
        """Join batches scored separately (e.g. mini-batches) into one."""
        if not parts:
            raise UserInputError("nothing to concatenate")
        return cls.from_lists(
            parts[0].rewarder,
            [r for p in parts for r in p.responses],
            [o for p in parts for o in p.offsets],
            [p.rewards[i, p.mask[i]] for p in parts for i in range(len(p))],
            torch.cat([p.sequence_rewards for p in parts]),
            None if any(p.step_scores is None for p in parts) else [row for p in parts for row in p.step_scores],
        )


class Rewarder(ABC):
    """Turns (prompt, response) pairs into per-token rewards.

    Subclasses implement `_score_batch` for a mini-batch; `score` validates the input,
    splits it into mini-batches of `batch_size`, and, when `align_to` gives the offsets of
    another tokenizer's tokens (e.g. the policy's), re-projects the rewards onto those tokens
    with `tokenreward.align.project_rewards` (sum-preserving by default).
    """

    name: str = "rewarder"
    #: how rewards combine when several source tokens fall in one target token
    combine: str = "sum"
    batch_size: int = 8
    #: with a budget, pairs are scored in length-sorted batches of at most this many padded tokens
    max_batch_tokens: int | None = None

    def input_length(self, prompt: TextOrMessages, response: TextOrMessages) -> int:
        """Input tokens of one pair (for the token budget); rewarders with a tokenizer count tokens."""
        return len(str(prompt)) + len(str(response))

    def batches(self, prompts: Sequence[TextOrMessages], responses: Sequence[TextOrMessages]) -> list[list[int]]:
        """Indices of each mini-batch: consecutive runs of `batch_size`, or, with `max_batch_tokens`,
        pairs sorted by length (longest first) grouped while `size * longest <= max_batch_tokens`."""
        if self.max_batch_tokens is None:
            return [
                list(range(s, min(s + self.batch_size, len(prompts)))) for s in range(0, len(prompts), self.batch_size)
            ]
        lengths = [self.input_length(p, r) for p, r in zip(prompts, responses)]
        return token_budget_batches(lengths, self.batch_size, self.max_batch_tokens)

    def score(
        self,
        prompts: Sequence[TextOrMessages],
        responses: Sequence[TextOrMessages],
        align_to: Sequence[Offsets] | None = None,
    ) -> TokenRewards:
        from tokenreward.encoding import response_text

        for name, given in (("prompts", prompts), ("responses", responses)):
            if isinstance(given, (str, bytes)):
                raise InputTypeError(
                    f"{self.name}.score: {name} is a single string; pass a list (one entry per pair), "
                    f"e.g. score([prompt], [response])"
                )
        if len(prompts) != len(responses):
            raise UserInputError(f"{self.name}: {len(prompts)} prompts but {len(responses)} responses")
        texts = [response_text(r, index=i) for i, r in enumerate(responses)]
        parts, order = [], []
        batches = self.batches(prompts, responses)
        for indices in batches:
            try:
                parts.append(self._score_batch([prompts[i] for i in indices], [responses[i] for i in indices]))
            except (ValueError, FloatingPointError) as err:
                if len(batches) == 1:
                    raise
                where = (
                    f"{indices[0]}..{indices[-1]}"
                    if indices == list(range(indices[0], indices[-1] + 1))
                    else ", ".join(map(str, indices))
                )
                raise type(err)(f"{self.name}, pairs {where} (numbered from 0 below): {err}") from err
            order += indices
        result = TokenRewards.concat(parts) if parts else TokenRewards.from_lists(self.name, [], [], [], [])
        if order != sorted(order):
            result = result.take(sorted(range(len(order)), key=order.__getitem__))
        result.responses = texts
        if align_to is not None:
            if len(align_to) != len(result):
                raise UserInputError(f"{self.name}: align_to has {len(align_to)} entries for {len(result)} responses")
            result = result.project(align_to, self.combine)
        return result

    @abstractmethod
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        """Score one mini-batch (at most `batch_size` pairs)."""


def token_budget_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted by length (longest first), grouped while `size <= batch_size` and
    `size * longest <= max_tokens` (an item longer than the budget is a batch of its own)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        group = groups[-1] if groups else None
        if group and len(group) < batch_size and (len(group) + 1) * lengths[group[0]] <= max_tokens:
            group.append(i)
        else:
            groups.append([i])
    return groups


REWARDERS: Registry[type[Rewarder]] = Registry("rewarder", "tokenreward.rewarders")


def register_rewarder(name: str):
    """Class decorator: register a `Rewarder` subclass under `name` and set its `name`."""
    return REWARDERS.register_class(name)


#: settings every rewarder may be offered besides its models: taken when the constructor has them
#: (`world`: a world folder, which `World.resources()` offers, for the `verifiable` rewarder's oracle)
SHARED_RESOURCES = ("device", "batch_size", "loading", "world")


def _parameters(name: str) -> list[inspect.Parameter]:
    sig = inspect.signature(REWARDERS.get(name).__init__)
    return [p for p in list(sig.parameters.values())[1:] if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _is_resource(parameter: inspect.Parameter) -> bool:
    """A model or tokenizer (annotated `PathOrModel`), or a shared setting."""
    return "PathOrModel" in str(parameter.annotation) or parameter.name in SHARED_RESOURCES


def rewarder_requirements(name: str) -> list[str]:
    """The constructor arguments without defaults (e.g. `reward_model`) a rewarder needs."""
    return [p.name for p in _parameters(name) if p.default is inspect.Parameter.empty]


def rewarder_options(name: str) -> dict[str, inspect.Parameter]:
    """The method options of rewarder `name` (constructor parameters that are not resources)."""
    return {p.name: p for p in _parameters(name) if not _is_resource(p)}


def check_rewarder_arguments(name: str, given: Mapping[str, Any], label: Callable[[str], str]) -> dict[str, Any]:
    """`given` (options and resources a user wrote for rewarder `name`) checked against its
    constructor: every name one of its arguments (unless it takes `**kwargs`), every option value
    of the annotated type (text typed by `typed_value`; otherwise a boolean only for a boolean
    option, a finite number for a number: `option_problem`). `label(key)` is how the user wrote
    the key (a flag, a config key), named in the one-line error. Returns the typed values."""
    params = list(inspect.signature(REWARDERS.get(name).__init__).parameters.values())[1:]
    accepted = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    unknown = [key for key in given if key not in accepted]
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in params):
        raise UserInputError(
            f"{', '.join(label(k) for k in unknown)}: rewarder {name!r} does not take "
            f"{'it' if len(unknown) == 1 else 'them'} (it takes {', '.join(accepted) or 'nothing'})"
        )
    options, typed = rewarder_options(name), dict(given)
    for key, value in given.items():
        if key not in options:
            continue
        annotation = options[key].annotation
        if isinstance(value, str):
            typed[key] = typed_value(value, annotation, label(key))
            continue
        kinds = annotation_kinds(annotation) - {object}
        problem = option_problem(value, kinds) if kinds else None
        if problem:
            raise UserInputError(f"{label(key)}: {problem}")
    return typed


def resource_names() -> set[str]:
    """Every resource name some registered rewarder takes (models, tokenizers, device, batch size)."""
    return {p.name for n in REWARDERS.names() for p in _parameters(n) if _is_resource(p)} | set(SHARED_RESOURCES)


def reward_tokenizer_applied(name: str, resources: dict[str, Any]) -> dict[str, Any]:
    """`resources` as rewarder `name` takes them: an offered `reward_tokenizer` (the reward model's
    own tokenizer, e.g. a world whose reward model has a pretrained backbone) becomes the
    `tokenizer` of a rewarder that reads `reward_model` and has no `reward_tokenizer` of its own."""
    parameters = {p.name for p in _parameters(name)}
    if (
        resources.get("reward_tokenizer") is None
        or "reward_model" not in parameters
        or "reward_tokenizer" in parameters
    ):
        return resources
    return {**resources, "tokenizer": resources["reward_tokenizer"]}


#: files by which a model folder holds its own tokenizer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def holds_tokenizer(reward_model: Any) -> bool:
    """Whether `reward_model` comes with its own tokenizer: a local folder with a tokenizer file,
    or a hub id (hub reward models ship theirs); a loaded model object does not say."""
    if not isinstance(reward_model, (str, Path)):
        return False
    folder = Path(reward_model).expanduser()
    if not folder.exists():
        return True  # a hub id
    return folder.is_dir() and any((folder / name).is_file() for name in TOKENIZER_FILES)


def with_reward_model(
    resources: dict[str, Any], reward_model: Any, own_tokenizer: bool | None = None
) -> dict[str, Any]:
    """`resources` with another `reward_model`, read with its own tokenizer (`own_tokenizer`; by
    default when it holds one, so a reward model with another vocabulary than the policy's never
    reads the policy's token ids), else with the resources' `tokenizer` (a `reward_tokenizer` of
    the replaced model is dropped)."""
    if own_tokenizer is None:
        own_tokenizer = holds_tokenizer(reward_model)
    replaced = {key: value for key, value in resources.items() if key != "reward_tokenizer"}
    return {**replaced, "reward_model": reward_model, **({"reward_tokenizer": reward_model} if own_tokenizer else {})}


def build_rewarder(name: str, resources: dict[str, Any] | None = None, **given: Any) -> Rewarder:
    """Build rewarder `name` from resources and options.

    Resources (models, tokenizers, `device`, `batch_size`, paths or loaded objects) may be
    offered to every rewarder, in `resources` or as keywords: each takes those its constructor
    has. Any other keyword is an option, which the rewarder must take (else an error naming it
    and listing the valid ones); text values (`"0.5"`, `"False"`) are typed from the
    constructor's annotations. A missing required resource is an error naming its flag.
    """
    from tokenreward.options import typed_value

    parameters = {p.name: p for p in _parameters(name)}
    options = rewarder_options(name)
    shared = resource_names()
    offered = reward_tokenizer_applied(name, {**(resources or {}), **{k: v for k, v in given.items() if k in shared}})
    unknown = [k for k in given if k not in shared and k not in parameters]
    if unknown:
        valid = ", ".join(options) or "none"
        raise UserInputError(f"rewarder {name!r} takes no option {unknown[0]!r}; its options: {valid}")
    kwargs = {k: v for k, v in offered.items() if v is not None and k in parameters}
    for key, value in given.items():
        if key in options:
            annotation = options[key].annotation
            kwargs[key] = (
                typed_value(value, annotation, f"rewarder {name!r} option {key}") if isinstance(value, str) else value
            )
    missing = [r for r in rewarder_requirements(name) if r not in kwargs]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise UserInputError(f"rewarder {name!r} needs {flags}")
    return REWARDERS.get(name)(**kwargs)
