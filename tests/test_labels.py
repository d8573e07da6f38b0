"""Edit-op alignment and TLCR token labels, against an independent full-table Levenshtein DP."""

from __future__ import annotations

import random

import pytest

from tokenreward.labels import NEGATIVE, NEUTRAL, POSITIVE, EditOp, edit_ops, label_pair, token_labels
from tokenreward.testing import reference_edit_ops


def apply_ops(source, target, ops):
    """Rebuild the target from the source and the edit script (matches copy the source)."""
    out, i = [], 0
    for op in ops:
        while i < op.source:
            out.append(source[i])
            i += 1
        if op.tag == "insert":
            out.append(target[op.target])
        elif op.tag == "replace":
            out.append(target[op.target])
            i += 1
        else:
            i += 1
    return out + list(source[i:])


def test_random_sequences_match_naive_dp_op_for_op():
    rng = random.Random(0)
    for _ in range(1500):
        # a 3-letter alphabet makes ties (several minimal scripts) the common case
        source = [rng.randrange(3) for _ in range(rng.randrange(0, 11))]
        target = [rng.randrange(3) for _ in range(rng.randrange(0, 11))]
        ops = edit_ops(source, target)
        expected, distance = reference_edit_ops(source, target)
        assert [tuple(op) for op in ops] == expected, (source, target)
        assert len(ops) == distance
        assert apply_ops(source, target, ops) == target


def test_long_sequences_are_minimal_and_valid():
    rng = random.Random(1)
    source = [rng.randrange(40) for _ in range(120)]
    target = list(source)
    for _ in range(15):
        target[rng.randrange(len(target))] = rng.randrange(40)
    del target[30:37]
    target[80:80] = [41, 42, 43]
    ops = edit_ops(source, target)
    expected, distance = reference_edit_ops(source, target)
    assert [tuple(op) for op in ops] == expected
    assert apply_ops(source, target, ops) == target


@pytest.mark.parametrize(
    "source, target, ops, rejected_labels, revision_labels",
    [
        # insertion: the added token is positive, nothing in the rejected response is negative
        ([1, 2, 3], [1, 9, 2, 3], [EditOp("insert", 1, 1)], [0.5, 0.5, 0.5], [0.5, 1.0, 0.5, 0.5]),
        # deletion: the deleted token is negative
        ([1, 2, 3], [1, 3], [EditOp("delete", 1, 1)], [0.5, 0.0, 0.5], [0.5, 0.5]),
        # substitution: negative on one side, positive on the other
        ([1, 2, 3], [1, 5, 3], [EditOp("replace", 1, 1)], [0.5, 0.0, 0.5], [0.5, 1.0, 0.5]),
        # tie: "delete 1, insert 3" beats "substitute twice" (delete > insert > substitute)
        ([1, 2], [2, 3], [EditOp("delete", 0, 0), EditOp("insert", 2, 1)], [0.0, 0.5], [0.5, 1.0]),
        # tie: of two equal tokens, the walk back from the end deletes the later one
        ([7, 7], [7], [EditOp("delete", 1, 1)], [0.5, 0.0], [0.5]),
        # tie: a swapped pair; the later token is deleted and inserted again in front
        ([4, 5], [5, 4], [EditOp("insert", 0, 0), EditOp("delete", 1, 2)], [0.5, 0.0], [1.0, 0.5]),
        # empty sides
        ([], [1, 2], [EditOp("insert", 0, 0), EditOp("insert", 0, 1)], [], [1.0, 1.0]),
        ([1, 2], [], [EditOp("delete", 0, 0), EditOp("delete", 1, 0)], [0.0, 0.0], []),
        ([1, 2], [1, 2], [], [0.5, 0.5], [0.5, 0.5]),
    ],
)
def test_hand_checked_ops_and_labels(source, target, ops, rejected_labels, revision_labels):
    assert edit_ops(source, target) == ops
    assert token_labels(source, target) == (rejected_labels, revision_labels)


def word_tokenizer(corpus):
    """A whitespace word-level fast tokenizer, so that tokens are words we can label by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in corpus for w in text.split()})
    vocab = {"<pad>": 0, "<unk>": 1, **{w: k + 2 for k, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def test_paper_appendix_example_labels_by_hand():
    """The paper's Appendix A revision, tokenized into words and labelled by Eqs. 4-5."""
    prompt = "Human: Do you like talking to humans? Assistant:"
    rejected = " Sure, I enjoy interacting with humans and helping them."
    revision = (
        " Sure, I enjoy interacting with humans because it's important to help them, and doing so can be"
        " really rewarding."
    )
    tokenizer = word_tokenizer([prompt, rejected, revision])
    record = label_pair(tokenizer, prompt, rejected, revision, reasoning="less detailed")
    assert record["rejected_tokens"] == rejected.split()
    assert record["revision_tokens"] == revision.split()
    # the six shared leading words and "and" are kept; "helping them." becomes "doing so",
    # and the other words are added: 6 inserted before "and", 4 after
    n, p, z = NEUTRAL, POSITIVE, NEGATIVE
    assert record["rejected_labels"] == [n] * 6 + [n, z, z]
    assert record["revision_labels"] == [n] * 6 + [p] * 6 + [n] + [p] * 6
    assert record["reasoning"] == "less detailed"
    for name in ("rejected", "revision"):
        text = record[name]
        assert [text[s:e] for s, e in record[f"{name}_offsets"]] == record[f"{name}_tokens"]


def test_label_pair_with_subword_tokenizer(tokenizer):
    prompt = "What is 17 + 25?"
    rejected = " The answer is 41. You are stupid."
    revision = " The answer is 42."
    record = label_pair(tokenizer, prompt, rejected, revision)
    assert "reasoning" not in record
    for name in ("rejected", "revision"):
        tokens, labels = record[f"{name}_tokens"], record[f"{name}_labels"]
        assert "".join(tokens) == record[name]
        assert len(labels) == len(tokens)
    # the shared prefix " The answer is" stays neutral on both sides
    prefix = tokenizer(prompt + " The answer is", add_special_tokens=True)["input_ids"]
    shared = len(prefix) - len(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    assert record["rejected_labels"][:shared] == [NEUTRAL] * shared
    assert record["revision_labels"][:shared] == [NEUTRAL] * shared
    # the insult is deleted: its tokens are negative; nothing in the revision is positive there
    insult_tokens = [
        t for t, (s, e) in zip(record["rejected_tokens"], record["rejected_offsets"]) if s >= rejected.index(" You")
    ]
    assert insult_tokens and record["rejected_labels"][-len(insult_tokens) :] == [NEGATIVE] * len(insult_tokens)
    assert POSITIVE in record["revision_labels"]  # "41" -> "42"


def test_label_command_world_reviser_resumes(small_world, tmp_path):
    """`tokenreward label --reviser world` on the world's pairs: the records are the labels of
    the oracle's revisions, and a second run with a larger --limit appends the rest."""
    from tokenreward.cli import main
    from tokenreward.jsonl import read_jsonl
    from tokenreward.models import load_tokenizer
    from tokenreward.world.oracle import revise

    output = tmp_path / "labels.jsonl"
    common = ["label", "--reviser", "world", "--world", str(small_world.root), "--output", str(output)]
    assert main(common + ["--limit", "3"]) == 0
    first = read_jsonl(output)
    assert main(common + ["--limit", "7", "--show", "2", "--html", str(tmp_path / "labels.html")]) == 0
    page = (tmp_path / "labels.html").read_text()
    assert page.count("labels (rejected)") == 2 and page.count("labels (revision)") == 2
    records = read_jsonl(output)
    assert len(first) == 3 and records[:3] == first and len(records) == 7
    tokenizer = load_tokenizer(small_world.tokenizer_dir)
    for index, (pair, record) in enumerate(zip(small_world.pairs("reward"), records)):
        revision = revise(small_world.prompt_record(pair["prompt"]), pair["rejected"])
        assert record == {"pair": index, **label_pair(tokenizer, pair["prompt"], pair["rejected"], revision)}
    # an output written for other pairs is refused
    assert main(common[:-1] + [str(output), "--split", "test", "--limit", "3"]) == 2


def test_label_command_input_errors(tmp_path, tokenizer):
    from tokenreward.cli import main

    tokenizer.save_pretrained(tmp_path / "tok")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "rejected": " r"}\n')
    args = [
        "label",
        "--reviser",
        "hf",
        "--tokenizer",
        str(tmp_path / "tok"),
        "--input",
        str(pairs),
        "--output",
        str(tmp_path / "o.jsonl"),
    ]
    assert main(args) == 2  # record 0 lacks "chosen"
    assert main(["label", "--output", str(tmp_path / "o.jsonl")]) == 2  # neither --reviser nor --show


def test_split_by_prompt_keeps_a_prompts_pairs_together():
    from tokenreward.labels import split_by_prompt

    records = [{"prompt": f"p{k % 10}", "n": k} for k in range(40)]
    train, held = split_by_prompt(records, 0.3, seed=1)
    held_prompts = {r["prompt"] for r in held}
    assert len(held_prompts) == 3 and len(held) == 12 and len(train) == 28
    assert not held_prompts & {r["prompt"] for r in train}
    assert split_by_prompt(records, 0.3, seed=1) == (train, held)
    with pytest.raises(ValueError, match="held-out fraction"):
        split_by_prompt(records, 1.0, seed=0)
