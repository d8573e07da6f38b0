"""`encode_pairs`: inputs, response positions and offsets, scoring positions, and bad input."""

from __future__ import annotations

import pytest
import torch

from tokenreward.encoding import encode_pairs, response_text
from tokenreward.testing import train_tokenizer

TEMPLATE = "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
TRIMMING = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] | trim }}<eos>{% endfor %}"


def test_plain_prompt_is_concatenated_and_padded(tokenizer):
    prompts, responses = ["What is 17 + 25?", "Hi"], [" The answer is 42.", " Hello world, thank you!"]
    enc = encode_pairs(tokenizer, prompts, responses)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        own = tokenizer(p + r, return_offsets_mapping=True)
        n = len(own["input_ids"])
        assert enc.input_ids[i, :n].tolist() == own["input_ids"]
        assert enc.input_ids[i, n:].eq(tokenizer.pad_token_id).all()
        assert enc.attention_mask[i].tolist() == [1] * n + [0] * (enc.input_ids.shape[1] - n)
        expected = [k for k, (s, e) in enumerate(own["offset_mapping"]) if e > len(p)]
        assert enc.response_positions[i] == expected
        assert enc.offsets[i] == [
            (own["offset_mapping"][k][0] - len(p), own["offset_mapping"][k][1] - len(p)) for k in expected
        ]
        assert "".join(r[s:e] for s, e in enc.offsets[i]) == r
        assert enc.last_positions[i] == n - 1
        assert enc.token_ends(i) == expected
        assert enc.prompt_end(i) == expected[0] - 1


def test_token_straddling_the_boundary_is_a_response_token(tokenizer):
    prompt, response = "Question: T", "he answer"
    assert "ĠThe" in tokenizer.tokenize(prompt + response)
    enc = encode_pairs(tokenizer, [prompt], [response])
    first = enc.response_positions[0][0]
    assert tokenizer.convert_ids_to_tokens(int(enc.input_ids[0, first])) == "ĠThe"
    assert enc.offsets[0][0] == (0, 2)  # clipped to the response's "he"


def test_conversational_prompt_and_response_messages():
    tokenizer = train_tokenizer(chat_template=TEMPLATE)
    prompt = [{"role": "user", "content": "What is 17 + 25?"}]
    response = [{"role": "assistant", "content": " The answer is 42."}]
    enc = encode_pairs(tokenizer, [prompt], [response])
    text = "<bos>user: What is 17 + 25?<eos><bos>assistant:  The answer is 42.<eos>"
    own = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert enc.input_ids[0].tolist() == own
    assert "".join(" The answer is 42."[s:e] for s, e in enc.offsets[0]) == " The answer is 42."
    assert enc.last_positions[0] == len(own) - 1  # the template's <eos> (not the pad token) is where the score is read
    assert enc.token_ends(0)[-1] == len(own) - 1
    assert enc.response_positions[0][-1] == len(own) - 2


def test_trimming_template_shifts_offsets():
    tokenizer = train_tokenizer(chat_template=TRIMMING)
    enc = encode_pairs(tokenizer, [[{"role": "user", "content": "Q?"}]], ["  yes, 42 \n"])
    assert enc.offsets[0][0][0] == 2 and enc.offsets[0][-1][1] == len("  yes, 42")
    assert tokenizer.decode(enc.input_ids[0]) == "[user]Q?<eos>[assistant]yes, 42<eos>"


def test_trailing_pad_tokens_are_skipped_like_hugging_face(tokenizer):
    """A template ending with the pad token: the score is read before it (HF's rightmost non-pad)."""
    padded = train_tokenizer(chat_template="{% for m in messages %}{{ m['content'] }}<pad>{% endfor %}")
    enc = encode_pairs(padded, [[{"role": "user", "content": "Q?"}]], [" yes"])
    assert padded.convert_ids_to_tokens(int(enc.input_ids[0, enc.last_positions[0]])) != "<pad>"
    assert enc.last_positions[0] == enc.response_positions[0][-1]
    with pytest.raises(ValueError, match="ends with the pad token"):
        encode_pairs(tokenizer, ["Q?"], [" yes<pad>"])


def test_own_pad_token_id(tokenizer):
    eos = tokenizer.eos_token_id
    enc = encode_pairs(tokenizer, ["Q?", "A longer prompt"], [" yes", " no"], pad_token_id=eos)
    short = len(tokenizer("Q? yes")["input_ids"])
    assert enc.input_ids[0, short:].eq(eos).all() and enc.last_positions[0] == short - 1
    with pytest.raises(ValueError, match="ends with the pad token"):
        encode_pairs(tokenizer, ["Q?"], [" yes<eos>"], pad_token_id=eos)


def test_longer_than_context(tokenizer):
    length = len(tokenizer("Q" + " hello" * 40)["input_ids"])
    assert length > 128
    with pytest.raises(
        ValueError, match=f"prompt\\+response 0 is {length} tokens, longer than the model's context of 128"
    ):
        encode_pairs(tokenizer, ["Q"], [" hello" * 40], max_length=128)
    assert encode_pairs(tokenizer, ["Q"], [" hello" * 40], max_length=length).last_positions == [length - 1]


@pytest.mark.parametrize(
    "prompt, response, error, message",
    [
        ("Q", "", ValueError, "response 0 is empty"),
        ("Q", None, TypeError, "expected a string or a list of messages"),
        ("Q", [{"role": "user", "content": "x"}], ValueError, "must be the assistant's"),
        (42, " yes", TypeError, "prompt 0: expected a string or a list of messages"),
        ([{"role": "user", "content": "Q"}], " yes", ValueError, "has no chat template"),
    ],
)
def test_bad_pairs(tokenizer, prompt, response, error, message):
    with pytest.raises(error, match=message):
        encode_pairs(tokenizer, [prompt], [response], max_length=128)


def test_template_that_rewrites_the_response():
    upper = train_tokenizer(chat_template="{% for m in messages %}{{ m['content'] | upper }}{% endfor %}")
    with pytest.raises(ValueError, match="changes the response text"):
        encode_pairs(upper, [[{"role": "user", "content": "q"}]], [" yes"])
    hidden = train_tokenizer(chat_template="{% for m in messages %}{{ m['role'] }}{% endfor %}")
    with pytest.raises(ValueError, match="exactly once"):
        encode_pairs(hidden, [[{"role": "user", "content": "q"}]], [" yes"])


def test_tokenizers_that_cannot_give_offsets(tokenizer):
    from transformers import ByT5Tokenizer

    with pytest.raises(ValueError, match="gives no character offsets"):
        encode_pairs(ByT5Tokenizer(), ["Q"], [" yes"])
    no_pad = train_tokenizer()
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        encode_pairs(no_pad, ["Q"], [" yes"])


def test_response_text_reads_the_assistant_message():
    assert response_text([{"role": "assistant", "content": " ok"}]) == " ok"
    assert response_text(" ok") == " ok"
    assert torch.is_tensor(encode_pairs(train_tokenizer(), ["a"], [" b"]).input_ids)
