"""Segment rewards (Yin et al. 2025, "Segmenting Text and Learning Their Rewards").

A response `y_0 .. y_{T-1}` is cut where the reference model (the SFT policy) is unsure what
comes next: with `e_t = H(pi_ref(. | x, y_<=t))`, the entropy of its next-token distribution
after token `t`, segment ends are `E = {t < T-1 : e_t > tau} + {T-1}` (`segment_ends`). The
reward model's scalar head read at a segment's last token is that segment's reward,
`r_k = s(x, y_<=end_k)`, and the sequence score the Bradley-Terry loss compares is their mean,
`R(x, y) = (1/K) sum_k r_k` (`segment_values`, trained by `train segment-reward-model`).

For a policy, each `r_k` is normalised by the location-aware normaliser (`_location_normaliser`):
`r^_k = (r_k - mu(k/K)) / sigma(k/K)`, then spread over the segment's `n_k` tokens
(`interpolate`): `"even"` gives every token `r^_k / n_k` (the authors' default), `"repeat"`
gives every token `r^_k`, `"end"` puts `r^_k` on the segment's last token. The rewards land on
the policy's tokens by characters (`align.project_rewards`; summed, or averaged for `"repeat"`).
The sequence reward is `R(x, y)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from tokenreward.encoding import EncodedPairs
from tokenreward.errors import UserInputError
from tokenreward.io import read_json_file
from tokenreward.logprobs import token_stats, unwrap
from tokenreward.models import (
    ModelLoading,
    PathOrModel,
    check_causal,
    input_device,
    load_causal_lm,
    loading_options,
    prefix_scores,
)
from tokenreward.rewarders._location_normaliser import LocationNormaliser
from tokenreward.rewarders._reward_model import RewardModelRewarder
from tokenreward.rewards import register_rewarder

#: written next to a trained segment reward model: its threshold and fitted normaliser
SEGMENT_FILE = "segment_rewards.json"
#: the threshold of the authors' training and PPO defaults (their Llama-3 runs; Phi-3 used 1.75)
DEFAULT_THRESHOLD = 2.0
INTERPOLATIONS = ("even", "repeat", "end")


def segment_ends(entropies: Sequence[float], threshold: float) -> list[int]:
    """The last token of each segment of a `T`-token response, from `e_0 .. e_{T-2}` (the entropy
    after every token but the last): `{t : e_t > threshold}` and `T-1`."""
    return [t for t, e in enumerate(entropies) if float(e) > threshold] + [len(entropies)]


def interpolate(rewards: torch.Tensor, ends: Sequence[int], how: str = "even") -> torch.Tensor:
    """Token rewards of a response from its segment rewards `rewards[k]` and segment ends (module docstring)."""
    if how not in INTERPOLATIONS:
        raise UserInputError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {how!r}")
    row = torch.zeros(ends[-1] + 1, dtype=rewards.dtype)
    start = 0
    for reward, end in zip(rewards, ends):
        if how == "end":
            row[end] = reward
        else:
            row[start : end + 1] = reward / (end + 1 - start) if how == "even" else reward
        start = end + 1
    return row


def check_vocabulary(model: torch.nn.Module, enc: EncodedPairs, what: str) -> None:
    vocab = model.get_input_embeddings().num_embeddings
    if enc.input_ids.numel() and int(enc.input_ids.max()) >= vocab:
        raise UserInputError(
            f"token id {int(enc.input_ids.max())} is outside the {what}'s vocabulary of {vocab}; the {what} must "
            "share the reward model's tokenizer"
        )


@torch.no_grad()
def response_entropies(reference: torch.nn.Module, enc: EncodedPairs, device) -> list[torch.Tensor]:
    """`e_t = H(pi_ref(. | x, y_<=t))` for `t = 0 .. T-2` of every response (CPU, float32)."""
    check_vocabulary(reference, enc, "reference model")
    counts = [len(positions) - 1 for positions in enc.response_positions]
    width = max(counts, default=0)
    if width == 0:
        return [torch.zeros(0) for _ in counts]
    after = torch.ones(len(counts), width, dtype=torch.long)  # rows shorter than `width` read position 1, unused
    for i, positions in enumerate(enc.response_positions):
        after[i, : counts[i]] = torch.tensor(positions[:-1]) + 1
    stats = token_stats(
        reference, enc.input_ids.to(device), enc.attention_mask.to(device), after.to(device), entropy=True
    )
    return [stats.entropy[i, : counts[i]].float().cpu() for i in range(len(counts))]


def segment_values(
    scores: torch.Tensor, enc: EncodedPairs, entropies: Sequence[torch.Tensor], threshold: float
) -> list[tuple[list[int], torch.Tensor]]:
    """Per response, its segment ends and segment rewards `r_k = scores[i, position of end_k]`
    (`scores` the head's output at every input position, `prefix_scores`; gradients kept)."""
    out = []
    for i, positions in enumerate(enc.response_positions):
        ends = segment_ends(entropies[i].tolist(), threshold)
        out.append((ends, scores[i, torch.tensor([positions[e] for e in ends], device=scores.device)]))
    return out


def segments_of(
    model: torch.nn.Module, reference: torch.nn.Module, enc: EncodedPairs, threshold: float
) -> list[tuple[list[int], torch.Tensor]]:
    """`segment_values` of an encoded batch: the reward model's scores at every position (with
    gradients when enabled) and the reference's entropies, both run where each takes its input."""
    device = input_device(unwrap(model))
    scores = prefix_scores(model, enc.input_ids.to(device), enc.attention_mask.to(device))
    return segment_values(scores, enc, response_entropies(reference, enc, input_device(reference)), threshold)


def sequence_score(values: torch.Tensor) -> torch.Tensor:
    """`R(x, y) = (1/K) sum_k r_k`, the score of a response the Bradley-Terry loss compares."""
    return values.mean()


def saved_settings(reward_model: PathOrModel) -> dict:
    """`SEGMENT_FILE` of a reward model folder (empty when the model is an object or has none)."""
    if not isinstance(reward_model, (str, Path)):
        return {}
    path = Path(reward_model).expanduser() / SEGMENT_FILE
    if not path.is_file():
        return {}
    settings = read_json_file(path, "retrain or delete it")
    threshold = settings.get("entropy_threshold") if isinstance(settings, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise UserInputError(f"{path}: expected an object with a numeric entropy_threshold; retrain or delete it")
    return settings


@register_rewarder("segment")
class SegmentRewarder(RewardModelRewarder):
    """Segment rewards (module docstring). `reference` is the causal LM whose entropy cuts the
    segments (it reads the reward model's token ids, so it shares its tokenizer). The threshold
    defaults to the one the model was trained with (its `segment_rewards.json`), else 2.0; the
    normaliser to the one fitted there (`normalise=False`: none), unless all four of
    `mean_slope`, `mean_intercept`, `std_slope`, `std_intercept` are given; a model without a
    fitted normaliser is not normalised."""

    def __init__(
        self,
        reward_model: PathOrModel,
        reference: PathOrModel,
        tokenizer: PathOrModel | None = None,
        entropy_threshold: float | None = None,
        interpolation: str = "even",
        normalise: bool = True,
        mean_slope: float | None = None,
        mean_intercept: float | None = None,
        std_slope: float | None = None,
        std_intercept: float | None = None,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        if interpolation not in INTERPOLATIONS:
            raise UserInputError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        super().__init__(reward_model, tokenizer, device, batch_size, loading)
        check_causal(self.model)
        self.reference = load_causal_lm(reference, loading=loading_options(loading, device)).eval()
        settings = saved_settings(reward_model)
        trained = settings.get("entropy_threshold")
        fallback = trained if trained is not None else DEFAULT_THRESHOLD
        self.threshold = float(entropy_threshold if entropy_threshold is not None else fallback)
        if self.threshold < 0:
            raise UserInputError(f"entropy_threshold must be at least 0, got {self.threshold}")
        self.interpolation = interpolation
        self.combine = "mean" if interpolation == "repeat" else "sum"
        given = (mean_slope, mean_intercept, std_slope, std_intercept)
        self.normaliser = self._normaliser(given, settings, normalise)

    def _normaliser(self, given: tuple, settings: dict, normalise: bool) -> LocationNormaliser:
        if any(v is not None for v in given):
            if any(v is None for v in given):
                raise UserInputError("segment: give all four of mean_slope, mean_intercept, std_slope, std_intercept")
            return LocationNormaliser(*map(float, given))  # no floor: the lines as given
        if not normalise or settings.get("normaliser") is None:
            return LocationNormaliser()
        if float(settings["entropy_threshold"]) != self.threshold:
            raise UserInputError(
                f"segment: the saved normaliser was fitted at entropy_threshold {settings['entropy_threshold']}, "
                f"not {self.threshold}; pass normalise=False or the four normaliser parameters"
            )
        return LocationNormaliser.from_json(settings["normaliser"], SEGMENT_FILE)

    def segments(self, enc: EncodedPairs) -> list[tuple[list[int], torch.Tensor]]:
        """Segment ends and raw segment rewards `r_k` of an encoded batch (CPU)."""
        return [(ends, values.cpu()) for ends, values in segments_of(self.model, self.reference, enc, self.threshold)]

    def rewards_from_encoding(self, enc: EncodedPairs) -> tuple[list[torch.Tensor], torch.Tensor]:
        rows, sequence = [], []
        for ends, values in self.segments(enc):
            rows.append(interpolate(self.normaliser(values), ends, self.interpolation))
            sequence.append(sequence_score(values))
        return rows, torch.stack(sequence)
