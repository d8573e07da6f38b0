"""Segment rewards: the cut against a transcription of the authors' rule, the normaliser and the
interpolation against closed forms, the rewards against Hugging Face's own forward passes run
one prefix at a time, and the alignment onto another tokenizer."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from tokenreward import build_rewarder
from tokenreward.align import project_rewards
from tokenreward.rewarders._location_normaliser import (
    LocationNormaliser,
    fit_location_normaliser,
    huber_fit,
    position_moments,
)
from tokenreward.rewarders.segment import SEGMENT_FILE, interpolate, segment_ends
from tokenreward.testing import tiny_causal_lm, tiny_reward_model

PROMPTS = ["What is 17 + 25?", "Name a capital city."]
RESPONSES = [" The answer is 42.", " The capital of France is Paris, hello world!"]


def authors_segment_ends(above: list[bool]) -> list[int]:
    """Transcribed from the authors' `segment_data_peak` (denserlhf/trainer/rm_trainer.py) for one
    row whose response starts at index 0 and whose last entry (`seq_len - 1`) is the EOS token;
    `above[j]` is their `mask[i, thresh, j]` (entropy above the threshold)."""
    seq_len = len(above)
    segment_end_positions = []
    for j in range(0, seq_len):
        if above[j]:
            segment_end_positions.append(j)
    if len(segment_end_positions) == 0:
        segment_end_positions.append(seq_len - 2 if seq_len > 1 else seq_len - 1)
    else:
        if segment_end_positions[-1] == seq_len - 1:
            if len(segment_end_positions) > 1 and segment_end_positions[-2] == seq_len - 2:
                segment_end_positions.pop()
            else:
                segment_end_positions[-1] = seq_len - 2
        elif segment_end_positions[-1] < seq_len - 2:
            segment_end_positions.append(seq_len - 2)
    return segment_end_positions


def from_param_json(p: list[float]) -> LocationNormaliser:
    """A normaliser from an entry of the authors' param.json: `[a_mu, a_sigma, b_mu, b_sigma]`."""
    return LocationNormaliser(mean_slope=p[0], std_slope=p[1], mean_intercept=p[2], std_intercept=p[3])


def test_segment_ends_follow_the_authors_cutting_rule():
    rng = random.Random(0)
    hand_made = [[0.1, 0.2, 0.3], [3.0, 3.0, 3.0], [0.1, 3.0, 0.2], [0.1, 0.1, 3.0], [3.0], [2.0, 2.5, 1.0, 2.0001]]
    drawn = [[rng.uniform(0.0, 4.0) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    for entropies in hand_made + drawn:  # entropy after each response token; the EOS entry is drawn too
        with_eos = entropies + [rng.uniform(0.0, 4.0)]
        theirs = authors_segment_ends([e > 2.0 for e in with_eos])
        assert segment_ends(entropies[:-1], 2.0) == theirs, entropies


def test_interpolation_closed_forms():
    values, ends = torch.tensor([3.0, -2.0, 0.5]), [1, 2, 6]
    even = interpolate(values, ends, "even")
    assert even.tolist() == pytest.approx([1.5, 1.5, -2.0, 0.125, 0.125, 0.125, 0.125])
    assert interpolate(values, ends, "repeat").tolist() == [3.0, 3.0, -2.0, 0.5, 0.5, 0.5, 0.5]
    assert interpolate(values, ends, "end").tolist() == [0.0, 3.0, -2.0, 0.0, 0.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="interpolation must be one of"):
        interpolate(values, ends, "linear")


def test_normaliser_closed_form_and_positive_std():
    normaliser = from_param_json([0.8967, 0.5680, 0.8572, 4.1667])  # the authors' Llama-3 SFT fit at 2.0
    values = torch.tensor([1.0, -0.5, 2.0, 0.25])
    expected = [
        (v - (0.8967 * math.log(k / 4) + 0.8572)) / (0.5680 * math.log(k / 4) + 4.1667)
        for k, v in enumerate(values.tolist(), start=1)
    ]
    assert normaliser(values).tolist() == pytest.approx(expected, abs=1e-6)
    assert LocationNormaliser()(values).tolist() == values.tolist()
    floored = LocationNormaliser(1.0, 0.0, 0.5, 2.0, min_position=0.5)  # p = 1/4 is read at 1/2
    expected = [
        (v - math.log(max(k / 4, 0.5))) / (0.5 * math.log(max(k / 4, 0.5)) + 2.0)
        for k, v in enumerate(values.tolist(), 1)
    ]
    assert floored(values).tolist() == pytest.approx(expected, abs=1e-6)
    normaliser(torch.zeros(1000))  # 0.568 ln(1/1000) + 4.1667 > 0
    with pytest.raises(ValueError, match="is -0.*at p = 1/2000; it must be positive"):
        normaliser(torch.zeros(2000))  # the std line crosses zero near p = exp(-4.1667 / 0.568) = 1/1535


def test_huber_fit_recovers_a_line_through_an_outlier():
    x = np.log(np.linspace(0.05, 1.0, 20))
    y = 0.7 * x + 0.5
    y[3] += 10.0
    slope, intercept = huber_fit(x, y)
    assert (slope, intercept) == pytest.approx((0.7, 0.5), abs=1e-3)
    assert np.polyfit(x, y, 1)[0] == pytest.approx(0.7 + 10.0 * (x[3] - x.mean()) / ((x - x.mean()) ** 2).sum())


def test_position_moments_and_fit_against_closed_forms():
    positions, means, stds = position_moments([[1.0, 2.0], [3.0, 5.0], [7.0]])
    assert positions.tolist() == [0.5, 1.0]
    assert means.tolist() == pytest.approx([2.0, 14.0 / 3.0])
    assert stds.tolist() == pytest.approx(
        [1.0, math.sqrt(((2 - 14 / 3) ** 2 + (5 - 14 / 3) ** 2 + (7 - 14 / 3) ** 2) / 3)]
    )
    # two responses of each length, one at mu(p) + sigma(p) and one at mu(p) - sigma(p): the groups'
    # means and population stds are exactly mu and sigma, which the fit recovers
    truth = from_param_json([0.7209, 0.2330, 0.6055, 2.6555])
    rewards = []
    for count in range(1, 21):
        mean, std = truth.moments(torch.arange(1, count + 1, dtype=torch.float64) / count)
        rewards += [(mean + std).tolist(), (mean - std).tolist()]
    fitted = fit_location_normaliser(rewards)
    assert fitted.min_position == 0.05
    assert list(fitted.to_json().values())[:4] == pytest.approx(list(truth.to_json().values())[:4], abs=1e-3)
    with pytest.raises(ValueError, match="single segment"):
        fit_location_normaliser([[1.0], [2.0]])


def hf_entropy_after(reference, ids: list[int], position: int) -> float:
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor([ids[: position + 1]])).logits[0, -1].double()
    return float(-(logits.softmax(-1) * logits.log_softmax(-1)).sum())


def hf_score(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def naive_segment_rewards(model, reference, tokenizer, prompt, response, threshold, normaliser):
    """Per response token its reward, and the sequence score, from one forward pass per prefix."""
    enc = tokenizer(prompt + response, return_offsets_mapping=True)
    ids = enc["input_ids"]
    positions = [p for p, (s, e) in enumerate(enc["offset_mapping"]) if e > len(prompt)]
    cut = [t for t in range(len(positions) - 1) if hf_entropy_after(reference, ids, positions[t]) > threshold]
    ends = cut + [len(positions) - 1]
    raw = [hf_score(model, ids[: positions[e] + 1]) for e in ends]
    rewards, start = [], 0
    for k, (value, end) in enumerate(zip(raw, ends), start=1):
        p = k / len(ends)
        mean = normaliser[0] * math.log(p) + normaliser[2]
        std = normaliser[1] * math.log(p) + normaliser[3]
        rewards += [(value - mean) / std / (end + 1 - start)] * (end + 1 - start)
        start = end + 1
    return rewards, sum(raw) / len(raw), len(ends)


def median_entropy(reference, tokenizer) -> float:
    ids = tokenizer(PROMPTS[1] + RESPONSES[1])["input_ids"]
    return float(np.median([hf_entropy_after(reference, ids, p) for p in range(len(ids) - 1)]))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_rewards_equal_forward_passes_one_prefix_at_a_time(arch, tokenizer):
    model, reference = tiny_reward_model(arch, tokenizer), tiny_causal_lm(arch, tokenizer, seed=1)
    threshold = median_entropy(reference, tokenizer)
    params = (0.5, 0.1, 0.2, 1.5)
    options = dict(zip(("mean_slope", "std_slope", "mean_intercept", "std_intercept"), params))
    rewarder = build_rewarder(
        "segment", reward_model=model, reference=reference, tokenizer=tokenizer, device="cpu",
        entropy_threshold=threshold, **options,
    )  # fmt: skip
    out = rewarder.score(PROMPTS, RESPONSES)
    counts = []
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected, score, count = naive_segment_rewards(
            model, reference, tokenizer, prompt, response, threshold, params
        )
        assert out.token_rewards(i) == pytest.approx(expected, abs=1e-4)
        assert out.sequence_rewards[i].item() == pytest.approx(score, abs=1e-4)
        counts.append(count)
    assert 1 < counts[1] < len(out.tokens(1))  # the threshold cuts the response into several segments


def test_alignment_onto_another_tokenizer_keeps_each_characters_reward(tokenizer, other_tokenizer):
    model, reference = tiny_reward_model("qwen2", tokenizer), tiny_causal_lm("qwen2", tokenizer)
    rewarder = build_rewarder(
        "segment", reward_model=model, reference=reference, tokenizer=tokenizer, device="cpu",
        entropy_threshold=median_entropy(reference, tokenizer),
    )  # fmt: skip
    own = rewarder.score(PROMPTS, RESPONSES)
    targets = [
        other_tokenizer(r, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"] for r in RESPONSES
    ]
    aligned = rewarder.score(PROMPTS, RESPONSES, align_to=targets)
    for i, response in enumerate(RESPONSES):
        expected = [0.0] * len(targets[i])
        for (_, end), reward in zip(
            own.offsets[i], own.token_rewards(i)
        ):  # to the target token holding its last character
            expected[next(j for j, (_, e) in enumerate(targets[i]) if e >= end)] += reward
        assert aligned.token_rewards(i) == pytest.approx(expected, abs=1e-6)
        assert sum(aligned.token_rewards(i)) == pytest.approx(sum(own.token_rewards(i)), abs=1e-5)
        assert aligned.sequence_rewards[i] == own.sequence_rewards[i]
    repeat = build_rewarder(
        "segment", reward_model=model, reference=reference, tokenizer=tokenizer, device="cpu", interpolation="repeat"
    )
    plain = repeat.score(PROMPTS, RESPONSES)
    projected = repeat.score(PROMPTS, RESPONSES, align_to=targets)
    for i, response in enumerate(RESPONSES):
        means = project_rewards(plain.offsets[i], plain.token_rewards(i), targets[i], len(response), "mean")
        assert projected.token_rewards(i) == pytest.approx(means, abs=1e-6)


def test_saved_threshold_and_normaliser_are_read_and_checked(tokenizer, tmp_path):
    model, reference = tiny_reward_model("llama", tokenizer), tiny_causal_lm("llama", tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = from_param_json([0.3, 0.1, -0.2, 2.0])
    (tmp_path / SEGMENT_FILE).write_text(json.dumps({"entropy_threshold": 1.5, "normaliser": saved.to_json()}))
    rewarder = build_rewarder("segment", reward_model=str(tmp_path), reference=reference, device="cpu")
    assert rewarder.threshold == 1.5 and rewarder.normaliser == saved
    unnormalised = build_rewarder("segment", reward_model=str(tmp_path), reference=reference, normalise="false")
    assert unnormalised.normaliser == LocationNormaliser()
    with pytest.raises(ValueError, match="fitted at entropy_threshold 1.5, not 2.0"):
        build_rewarder("segment", reward_model=str(tmp_path), reference=reference, entropy_threshold=2.0)
    with pytest.raises(ValueError, match="give all four"):
        build_rewarder("segment", reward_model=str(tmp_path), reference=reference, mean_slope=1.0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        build_rewarder("segment", reward_model=str(tmp_path), reference=reference, interpolation="spline")
    (tmp_path / SEGMENT_FILE).write_text(json.dumps({"entropy_threshold": 1.5, "normaliser": {"mean_slope": 1}}))
    with pytest.raises(ValueError, match="segment_rewards.json: the normaliser must be an object with"):
        build_rewarder("segment", reward_model=str(tmp_path), reference=reference)
    (tmp_path / SEGMENT_FILE).write_text(json.dumps({"normaliser": None}))
    with pytest.raises(ValueError, match="segment_rewards.json: expected an object with a numeric entropy_threshold"):
        build_rewarder("segment", reward_model=str(tmp_path), reference=reference)
    with pytest.raises(ValueError, match="outside the reference model's vocabulary"):
        small = tiny_causal_lm("llama", tokenizer)
        small.resize_token_embeddings(10)
        build_rewarder("segment", reward_model=model, reference=small, tokenizer=tokenizer).score(PROMPTS, RESPONSES)
