"""`tokenreward score`: the JSON contract, JSONL batches, text and HTML output, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tokenreward.cli import main
from tokenreward.testing import hf_reward_score, tiny_causal_lm, tiny_reward_model

PROMPT, RESPONSE = "What is 17 + 25?", " The answer is 42."
CONTRACT_KEYS = ["rewarder", "sequence_reward", "tokens", "offsets", "rewards", "row"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("rm") / "reward-model"
    tiny_reward_model("llama", tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def score(*args: str) -> list[str]:
    return ["score", *args]


def test_single_pair_json(model_dir, capsys):
    assert (
        main(
            score(
                "--rewarder",
                "red",
                "--reward-model",
                str(model_dir),
                "--prompt",
                PROMPT,
                "--response",
                RESPONSE,
                "--format",
                "json",
                "--option",
                "keep_sum=true",
            )
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert list(record) == CONTRACT_KEYS
    assert record["rewarder"] == "red"
    assert record["tokens"] == [RESPONSE[s:e] for s, e in record["offsets"]]
    assert "".join(record["tokens"]) == RESPONSE
    assert len(record["rewards"]) == len(record["tokens"])
    full = hf_reward_score(model_dir, PROMPT, RESPONSE)
    assert record["sequence_reward"] == pytest.approx(full, abs=1e-5)
    assert sum(record["rewards"]) == pytest.approx(full, abs=1e-4)


def test_batch_jsonl(model_dir, tmp_path):
    pairs = [
        {"prompt": "Hi", "response": " Hello!"},
        {"prompt": "Capital of Peru?", "completion": " Lima."},
        {"prompt": "2 + 3?", "response": " 5", "extra": 1},
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(json.dumps(p) for p in pairs) + "\n\n")
    out = tmp_path / "out" / "scored.jsonl"
    assert (
        main(
            score(
                "--rewarder",
                "sparse",
                "--reward-model",
                str(model_dir),
                "--input",
                str(source),
                "--format",
                "json",
                "--output",
                str(out),
                "--batch-size",
                "1",
            )
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    for pair, record in zip(pairs, records):
        response = pair.get("response", pair.get("completion"))
        score_value = hf_reward_score(model_dir, pair["prompt"], response)
        assert record["sequence_reward"] == pytest.approx(score_value, abs=1e-5)
        assert record["rewards"][-1] == pytest.approx(score_value, abs=1e-5)
        assert "".join(record["tokens"]) == response


def test_html_page(model_dir, tmp_path):
    out = tmp_path / "heat.html"
    assert (
        main(
            score(
                "--rewarder",
                "red",
                "--reward-model",
                str(model_dir),
                "--prompt",
                PROMPT,
                "--response",
                " <b>42</b> & more",
                "--format",
                "html",
                "--output",
                str(out),
            )
        )
        == 0
    )
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "http" not in page and "<link" not in page
    assert "&lt;" in page and "&amp;" in page and "<b>" not in page
    assert page.count("title=") >= 5 and "reward " in page


def test_text_heatmap(model_dir, tmp_path):
    out = tmp_path / "heat.txt"
    assert (
        main(
            score(
                "--rewarder",
                "abc",
                "--reward-model",
                str(model_dir),
                "--prompt",
                PROMPT,
                "--response",
                RESPONSE,
                "--output",
                str(out),
            )
        )
        == 0
    )
    text = out.read_text()
    assert text.splitlines()[1] == RESPONSE
    assert f"sequence reward {hf_reward_score(model_dir, PROMPT, RESPONSE):+.4f}" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rewarder", "red", "--prompt", "x", "--response", "y"], "needs --reward-model"),
        (["--rewarder", "nope", "--prompt", "x", "--response", "y"], "unknown rewarder 'nope'"),
        (["--rewarder", "red", "--prompt", "x"], "--prompt and --response go together"),
        (["--rewarder", "red"], "give either --prompt and --response, or --input FILE"),
        (["--rewarder", "red", "--input", "missing.jsonl"], "no such file"),
        (
            ["--rewarder", "red", "--reward-model", "./no/such/dir", "--prompt", "x", "--response", "y"],
            "does not exist",
        ),
        (["--rewarder", "red", "--prompt", "x", "--response", "y", "--option", "beta_c"], "expects NAME=VALUE"),
    ],
)
def test_errors_are_reported(args, message, capsys):
    assert main(score(*args)) == 2
    assert message in capsys.readouterr().err


def test_errors_from_the_model_and_the_input(model_dir, tmp_path, tokenizer, capsys):
    rm = ["--rewarder", "red", "--reward-model", str(model_dir)]
    assert main(score(*rm, "--prompt", "x", "--response", "")) == 2
    assert "--response: the response is empty" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": " b"}\n{"prompt": "a"}\n')
    assert main(score(*rm, "--input", str(bad))) == 2
    assert "row 1 (line 2): needs a 'prompt' and a 'response'" in capsys.readouterr().err
    bad.write_text("{not json\n")
    assert main(score(*rm, "--input", str(bad))) == 2
    assert "row 0 (line 1): not valid JSON" in capsys.readouterr().err
    assert main(score(*rm, "--prompt", "x", "--response", "y", "--option", "beta_c=2")) == 2
    assert "beta_c must lie in [0, 1]" in capsys.readouterr().err
    lm = tmp_path / "lm"
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(lm)
    tokenizer.save_pretrained(lm)
    assert main(score("--rewarder", "red", "--reward-model", str(lm), "--prompt", "x", "--response", "y")) == 2
    assert "without a trained score head" in capsys.readouterr().err


def test_console_script(model_dir):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenreward.cli",
            "score",
            "--rewarder",
            "uniform",
            "--reward-model",
            str(model_dir),
            "--prompt",
            PROMPT,
            "--response",
            RESPONSE,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(done.stdout)
    assert sum(record["rewards"]) == pytest.approx(hf_reward_score(model_dir, PROMPT, RESPONSE), abs=1e-4)
    assert done.stderr == ""
