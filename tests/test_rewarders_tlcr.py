"""`tlcr` and `tlcr_fixed` against the discriminator's own Hugging Face forward, one
unpadded prompt+response at a time, with response tokens found from the tokenizer's offsets."""

from __future__ import annotations

import pytest
import torch

from tokenreward.align import offsets_from_ids
from tokenreward.rewards import REWARDERS, build_rewarder
from tokenreward.testing import tiny_config

PROMPTS = ["What is 17 + 25?", "Name the capital of Peru.", "Say something kind."]
RESPONSES = [" The answer is 42.", " The capital of Peru is Lima, Peru.", " Thank you, I am happy to help you!"]


@pytest.fixture
def discriminator(arch, tokenizer):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(
        tiny_config(arch, len(tokenizer), tokenizer.pad_token_id, num_labels=1)
    )
    head = model.classifier if arch == "gpt2" else model.score
    with torch.no_grad():
        head.weight.mul_(40.0)  # spread the probabilities over (0, 1) so every band is visited
    return model.eval()


def reference_probs(model, tokenizer, prompt: str, response: str) -> list[float]:
    """sigma(logit) at each response token, from one unpadded forward pass."""
    enc = tokenizer(prompt + response, return_offsets_mapping=True)
    positions = [p for p, (s, e) in enumerate(enc["offset_mapping"]) if e > len(prompt) and e > s]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc["input_ids"]])).logits[0, :, 0]
    return torch.sigmoid(logits[positions]).tolist()


def test_tlcr_is_two_d_minus_one(discriminator, tokenizer):
    rewarder = build_rewarder("tlcr", discriminator=discriminator, tokenizer=tokenizer, device="cpu", batch_size=2)
    result = rewarder.score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected = [2 * p - 1 for p in reference_probs(discriminator, tokenizer, prompt, response)]
        assert result.token_rewards(i) == pytest.approx(expected, abs=1e-5)
        assert float(result.sequence_rewards[i]) == pytest.approx(sum(expected), abs=1e-4)
        assert "".join(result.tokens(i)) == response
    values = result.rewards[result.mask]
    assert values.min() >= -1 and values.max() <= 1
    assert values.abs().max() > 0.6  # not squashed (the public code's double softmax caps at about 0.46)


def test_tlcr_fixed_band(discriminator, tokenizer):
    rewarder = build_rewarder("tlcr_fixed", discriminator=discriminator, tokenizer=tokenizer, device="cpu")
    result = rewarder.score(PROMPTS, RESPONSES)
    seen = set()
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected = []
        for p in reference_probs(discriminator, tokenizer, prompt, response):
            expected.append(1.0 if p >= 0.6 else -1.0 if p <= 0.4 else 0.0)
        assert result.token_rewards(i) == expected
        seen.update(expected)
    assert seen == {-1.0, 0.0, 1.0}
    with pytest.raises(ValueError, match="band"):
        build_rewarder("tlcr_fixed", discriminator=discriminator, tokenizer=tokenizer, band=0.3)


def test_reprojection_onto_policy_tokens_averages(tokenizer, other_tokenizer):
    """Rewards moved onto another tokenizer's tokens: each target token gets the mean of the
    rewards of the source tokens that end inside it (0 when none does)."""
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_config(
        tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, num_labels=1)
    ).eval()
    rewarder = build_rewarder("tlcr", discriminator=model, tokenizer=tokenizer, device="cpu")
    source = rewarder.score(PROMPTS, RESPONSES)
    targets = [
        offsets_from_ids(other_tokenizer, other_tokenizer(r, add_special_tokens=False)["input_ids"])[1]
        for r in RESPONSES
    ]
    projected = rewarder.score(PROMPTS, RESPONSES, align_to=targets)
    for i in range(len(RESPONSES)):
        rewards = source.token_rewards(i)
        expected = []
        for k, (start, end) in enumerate(targets[i]):
            previous_end = targets[i][k - 1][1] if k else -1
            inside = [r for (s, e), r in zip(source.offsets[i], rewards) if previous_end < e <= end]
            expected.append(sum(inside) / len(inside) if inside else 0.0)
        assert projected.token_rewards(i) == pytest.approx(expected, abs=1e-6)


def test_folder_brings_its_own_tokenizer(tmp_path, tokenizer, other_tokenizer):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_config(
        tiny_config("qwen2", len(tokenizer), tokenizer.pad_token_id, num_labels=1)
    )
    model.save_pretrained(tmp_path / "disc")
    tokenizer.save_pretrained(tmp_path / "disc")
    # a shared `tokenizer` resource (e.g. the world's) does not override the discriminator's own
    rewarder = build_rewarder("tlcr", discriminator=str(tmp_path / "disc"), tokenizer=other_tokenizer, device="cpu")
    assert rewarder.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert len(rewarder.score(PROMPTS[:1], RESPONSES[:1])) == 1
    with pytest.raises(FileNotFoundError, match="train discriminator"):
        build_rewarder("tlcr", discriminator=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="needs --discriminator"):
        build_rewarder("tlcr_fixed", tokenizer=tokenizer)
    assert {"tlcr", "tlcr_fixed"} <= set(REWARDERS.names())
