"""Character-offset alignment against naive loops and the fast tokenizer's own offsets."""

from __future__ import annotations

import random

import pytest

from tokenreward.align import check_offsets, offsets_from_ids, project_rewards

TEXT = "The capital of France is Paris. 17 + 25 = 42!"


def random_segmentation(rng: random.Random, length: int) -> list[tuple[int, int]]:
    cuts = sorted(rng.sample(range(1, length), rng.randint(1, length // 3)))
    bounds = [0] + cuts + [length]
    return list(zip(bounds[:-1], bounds[1:]))


@pytest.mark.parametrize("seed", range(20))
def test_project_rewards_matches_naive_assignment(seed):
    rng = random.Random(seed)
    source = random_segmentation(rng, len(TEXT))
    target = random_segmentation(rng, len(TEXT))
    rewards = [rng.uniform(-1, 1) for _ in source]
    summed = project_rewards(source, rewards, target, len(TEXT))
    averaged = project_rewards(source, rewards, target, len(TEXT), combine="mean")
    for j, (start, end) in enumerate(target):
        previous_end = target[j - 1][1] if j else 0
        mine = [r for (_, e), r in zip(source, rewards) if previous_end < e <= end]
        assert summed[j] == pytest.approx(sum(mine))
        assert averaged[j] == pytest.approx(sum(mine) / len(mine) if mine else 0.0)
    assert sum(summed) == pytest.approx(sum(rewards))


def test_empty_target_tokens_get_nothing():
    source = [(0, 3), (3, 6)]
    target = [(0, 0), (0, 3), (3, 3), (3, 6), (6, 6)]
    assert project_rewards(source, [1.0, 2.0], target, 6) == [0.0, 1.0, 0.0, 2.0, 0.0]


@pytest.mark.parametrize(
    "target, message",
    [
        ([(0, 5), (5, 4)], r"offsets \(5, 4\), not a span"),
        ([(0, 10), (2, 8)], "before the previous token's end"),
        ([(0, 50)], "not a span of the response of length 45"),
        ([(0, 20)], "do not cover the same text"),
        ([], "target tokenization is empty"),
    ],
)
def test_inconsistent_offsets_are_refused(target, message):
    with pytest.raises(ValueError, match=message):
        project_rewards([(0, 20), (20, 45)], [1.0, 2.0], target, len(TEXT))


def test_reward_count_and_combine_are_checked():
    with pytest.raises(ValueError, match="1 rewards for 2 source tokens"):
        project_rewards([(0, 20), (20, 45)], [1.0], [(0, 45)], len(TEXT))
    with pytest.raises(ValueError, match="combine must be"):
        project_rewards([(0, 45)], [1.0], [(0, 45)], len(TEXT), combine="max")


def test_check_offsets_accepts_shared_character_spans():
    check_offsets([(0, 1), (1, 2), (1, 2), (2, 4)], 4, "x")


def test_offsets_from_ids_equal_tokenizer_offsets_on_ascii(tokenizer):
    enc = tokenizer(TEXT, return_offsets_mapping=True)
    text, offsets = offsets_from_ids(tokenizer, enc["input_ids"])
    assert text == TEXT
    assert offsets == [tuple(o) for o in enc["offset_mapping"]]


def test_offsets_from_ids_give_split_characters_to_the_completing_token(tokenizer):
    response = " naïve 😀 ok"
    ids = tokenizer(response)["input_ids"] + [tokenizer.eos_token_id]
    text, offsets = offsets_from_ids(tokenizer, ids)
    assert text == response
    assert "".join(text[s:e] for s, e in offsets) == response  # contiguous, no character twice
    pieces = tokenizer.convert_ids_to_tokens(ids)
    for k, (s, e) in enumerate(offsets):
        decoded = tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
        if "\ufffd" in decoded[-1:]:  # an incomplete byte sequence owns no character yet
            assert s == e, pieces[k]
        else:
            assert decoded == text[:e], pieces[k]
    assert offsets[-1] == (len(text), len(text))  # EOS: empty span


def test_terminal_layout_moves_the_completing_tokens_reward_to_the_eos():
    from tokenreward.align import terminal_layout

    # " ab" + EOS: tokens (0,1) (1,3) then the EOS's empty span (3,3)
    assert terminal_layout([0.5, 2.0, 0.0], [(0, 1), (1, 3), (3, 3)], 3) == [0.5, 0.0, 2.0]
    # no EOS: the completing token is the last; nothing moves
    assert terminal_layout([0.5, 2.0], [(0, 1), (1, 3)], 3) == [0.5, 2.0]
    # only the completing token's reward moves, over any empty spans after the text
    assert terminal_layout([1.0, 3.0, 0.25, 0.0], [(0, 2), (2, 2), (2, 2), (2, 2)], 2) == [0.0, 3.0, 0.25, 1.0]
    with pytest.raises(ValueError, match="3 rewards for 2 tokens"):
        terminal_layout([1.0, 2.0, 3.0], [(0, 1), (1, 2)], 2)


def test_token_rewards_project_themselves_and_pad():
    """`TokenRewards.project` = `project_rewards` per response; `padded` zero-fills to a width."""
    from tokenreward.align import project_rewards
    from tokenreward.rewards import TokenRewards

    result = TokenRewards.from_lists(
        "x", ["ab cd", "efg"], [[(0, 2), (2, 5)], [(0, 1), (1, 3)]], [[1.0, 2.0], [0.5, -1.0]], [3.0, -0.5]
    )
    target = [[(0, 1), (1, 3), (3, 5)], [(0, 3)]]
    projected = result.project(target, "sum")
    for i in range(2):
        assert projected.token_rewards(i) == pytest.approx(
            project_rewards(result.offsets[i], result.token_rewards(i), target[i], len(result.responses[i]), "sum")
        )
    assert projected.sequence_rewards.tolist() == [3.0, -0.5]
    assert projected.padded(4).tolist() == [
        projected.token_rewards(0) + [0.0],
        projected.token_rewards(1) + [0.0, 0.0, 0.0],
    ]
    with pytest.raises(ValueError, match="shorter than the longest"):
        projected.padded(2)
