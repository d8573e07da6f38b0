"""GGUF files wherever a model or tokenizer is taken: a tiny llama GGUF is written on the spot from a
random `LlamaForCausalLM` and a byte-level BPE tokenizer, then converted once into the cache and
checked against the Hugging Face objects it came from."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tokenreward.gguf import file_sha256, gguf_cache_root, resolve_model_source
from tokenreward.models import load_causal_lm, load_tokenizer, scalar_head_from_lm
from tokenreward.testing import tiny_causal_lm, train_tokenizer
from tokenreward.testing.gguf_files import write_tiny_gguf

TEXTS = ["What is 17 + 25? The answer is 42.", " Hello world!\nThe capital of Peru is Lima.", "Samosa <eos>"]
TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(GGUF file, the LlamaForCausalLM it holds, the tokenizer it holds)."""
    tokenizer = train_tokenizer(chat_template=TEMPLATE)
    model = tiny_causal_lm("llama", tokenizer, seed=3)
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model, tokenizer)
    return path, model, tokenizer


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENREWARD_GGUF_CACHE", str(tmp_path / "gguf-cache"))
    return tmp_path / "gguf-cache"


def test_the_converted_model_gives_the_source_models_logits(source, cache):
    path, model, tokenizer = source
    folder = resolve_model_source(str(path))
    assert folder == cache / file_sha256(path) and gguf_cache_root() == cache
    converted = load_causal_lm(path)  # the loader takes the file itself
    ids = torch.tensor([tokenizer(TEXTS[0] + TEXTS[1])["input_ids"]])
    with torch.no_grad():
        expected, got = model(input_ids=ids).logits, converted(input_ids=ids).logits
    assert converted.dtype == torch.float32 and getattr(converted.config, "quantization_config", None) is None
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_the_converted_tokenizer_encodes_like_the_source(source):
    path, _, tokenizer = source
    converted = load_tokenizer(path)
    for text in TEXTS:
        assert converted(text)["input_ids"] == tokenizer(text)["input_ids"], text
    assert (converted.pad_token, converted.eos_token, converted.bos_token) == ("<pad>", "<eos>", "<bos>")
    messages = [{"role": "user", "content": "Hi"}]
    assert converted.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(
        messages, tokenize=False
    )


def test_a_second_resolve_reuses_the_cached_folder(source, capfd):
    path = source[0]
    folder = resolve_model_source(path)
    first = capfd.readouterr().err
    before = (folder.stat().st_ino, (folder / "model.safetensors").stat().st_mtime_ns)
    assert resolve_model_source(str(path)) == folder
    assert first.count("converting tiny.gguf") == 1 and " done in " in first
    assert capfd.readouterr().err == ""
    assert (folder.stat().st_ino, (folder / "model.safetensors").stat().st_mtime_ns) == before


def test_a_folder_holding_one_gguf_resolves_to_the_files_conversion(source, tmp_path):
    path = source[0]
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / path.name).write_bytes(path.read_bytes())
    assert resolve_model_source(holder) == resolve_model_source(path)
    (holder / "second.gguf").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"holds 2 GGUF files and no config\.json \(second\.gguf, tiny\.gguf\)"):
        resolve_model_source(holder)


def test_other_sources_pass_unchanged(source, tmp_path):
    hf_folder = tmp_path / "hf"
    source[2].save_pretrained(hf_folder)
    (hf_folder / "config.json").write_text("{}")
    (hf_folder / "stray.gguf").write_bytes(source[0].read_bytes())  # a Hugging Face folder stays one
    model = source[1]
    for value in ("HuggingFaceTB/SmolLM2-135M-Instruct", hf_folder, str(hf_folder), model, None):
        assert resolve_model_source(value) is value


CHILD = """
import sys
from tokenreward.gguf import resolve_model_source
print("waiting", flush=True)
print(resolve_model_source(sys.argv[1]), flush=True)
"""


def test_two_processes_resolving_one_file_convert_it_once(source, cache):
    """Both children find no folder and queue on the lock this test holds; released, one converts and
    the other finds its folder."""
    path = source[0]
    cache.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    with open(cache / f"{file_sha256(path)}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for child in children:
            assert child.stdout.readline().strip() == "waiting"
        time.sleep(1.0)  # both past the hash and the first look into the cache, blocked on the lock
        assert not (cache / file_sha256(path)).exists()
    results = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), results
    folders = {out.strip() for out, _ in results}
    assert folders == {str(cache / file_sha256(path))}
    assert sum(err.count("converting tiny.gguf") for _, err in results) == 1, results
    assert sorted(p.name for p in cache.iterdir()) == sorted([file_sha256(path), f"{file_sha256(path)}.lock"])


def bad_gguf(kind: str, good: Path, folder: Path) -> Path:
    path = folder / f"{kind}.gguf"
    data = good.read_bytes()
    content = {"truncated": data[: len(data) // 2], "garbage": b"\x13\x37garbage" * 64, "empty": b""}
    if kind == "unsupported":
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        assert "rwkv6" not in GGUF_SUPPORTED_ARCHITECTURES
        tokenizer = train_tokenizer()
        return write_tiny_gguf(path, tiny_causal_lm("llama", tokenizer), tokenizer, architecture="rwkv6")
    path.write_bytes(content[kind])
    return path


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncated", r" \(\d+ bytes\): not a complete GGUF file \(.*\); it is truncated or damaged"),
        ("garbage", r": not a GGUF file \(it starts with b'\\x137ga', a GGUF file starts with b'GGUF'\)"),
        ("empty", r": empty file \(0 bytes\), not a GGUF model"),
        ("unsupported", r": GGUF architecture 'rwkv6' is not supported by transformers \(supported: .*llama.*\)"),
    ],
)
def test_a_bad_gguf_is_a_one_line_error_naming_the_file(kind, reason, source, tmp_path, cache):
    path = bad_gguf(kind, source[0], tmp_path)
    with pytest.raises(ValueError) as caught:
        load_causal_lm(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    assert re.fullmatch(re.escape(str(path)) + reason, message), message
    assert not [p for p in cache.glob("*") if p.is_dir()]  # no folder, not even a half-written one


def test_a_reward_model_from_a_gguf_gets_a_new_head_silently(source, capfd):
    path, model, _ = source
    rm = scalar_head_from_lm(path)
    output = capfd.readouterr()
    assert "MISSING" not in output.out + output.err and "LOAD REPORT" not in output.out + output.err
    for name, weights in model.model.state_dict().items():
        torch.testing.assert_close(rm.model.state_dict()[name], weights, rtol=0, atol=1e-6)
    assert rm.config.num_labels == 1 and rm.score.out_features == 1


def test_cli_trains_a_reward_model_from_a_gguf(source, tmp_path, capsys):
    from tokenreward.cli import main

    path, _, tokenizer = source
    pairs = [
        {"prompt": "What is 17 + 25?", "chosen": " The answer is 42.", "rejected": " It is 41."},
        {"prompt": "Hi", "chosen": " Hello!", "rejected": " Go away."},
    ] * 2
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    argv = ["train", "reward-model", "--policy", str(path), "--data", str(data), "--out", str(tmp_path / "out")]
    assert main([*argv, "--batch-size", "2", "--no-progress"]) == 0
    assert "converting tiny.gguf" in capsys.readouterr().err
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2]
    final = load_tokenizer(tmp_path / "out" / "final")
    assert final(TEXTS[0])["input_ids"] == tokenizer(TEXTS[0])["input_ids"]


def test_the_trainers_path_checks_and_the_tlcr_rewarder_take_a_gguf(source):
    from tokenreward.rewarders.tlcr import TlcrRewarder
    from tokenreward.trainers.vocabulary import has_tokenizer

    path, model, tokenizer = source
    assert has_tokenizer(path) and has_tokenizer(str(path))
    rewarder = TlcrRewarder(str(path), device="cpu")  # a causal LM backbone gets a new one-logit head
    assert rewarder.tokenizer(TEXTS[1])["input_ids"] == tokenizer(TEXTS[1])["input_ids"]
    torch.testing.assert_close(
        rewarder.model.model.embed_tokens.weight, model.model.embed_tokens.weight, rtol=0, atol=1e-6
    )
