"""tokenreward inside TRL's trainers: GRPO with token-level advantages against TRL's own
GRPOTrainer and a naive loop over the formula; the DPO-family subclasses against tokenreward's
own preference trainer and (T-REG with alpha = 0) TRL's DPOTrainer."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

from tokenreward.align import offsets_from_ids
from tokenreward.integrations.trl import (
    SePOConfig,
    SePOTrainer,
    TDPOConfig,
    TDPOTrainer,
    TGDPOConfig,
    TGDPOTrainer,
    TokenRewardFunction,
    TokenRewardGRPOTrainer,
    TRegDPOConfig,
    TRegDPOTrainer,
)
from tokenreward.jsonl import read_jsonl
from tokenreward.losses.advantages import AdvantageBatch, AdvantageSettings, estimate_advantages
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, tiny_config, tiny_reward_model, train_tokenizer
from tokenreward.trainers.preference import PreferenceConfig, run

PROMPTS = ["What is 17 + 25?", "The capital of France is", "Say hello.", "Thank you for asking,"]
GROUP = 4


@pytest.fixture(scope="module")
def reward_model(tok):
    return tiny_reward_model("llama", tok, seed=3)


def grpo_args(tmp_path: Path, **overrides) -> GRPOConfig:
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 2 * GROUP,
        "num_generations": GROUP,
        "max_completion_length": 4,
        "report_to": [],
        "beta": 0.0,
        "use_cpu": True,
        "bf16": False,
        "save_strategy": "no",
        "logging_steps": 1,
        "max_steps": 3,
        "learning_rate": 1e-3,
    }
    return GRPOConfig(**{**values, **overrides})


def eos_prone_policy(tokenizer):
    """A tiny random policy whose EOS logit is scaled up, so some of its few-token samples end with
    an EOS and others are cut at the length limit."""
    policy = tiny_causal_lm("llama", tokenizer, seed=0)
    with torch.no_grad():
        policy.lm_head.weight[tokenizer.eos_token_id] *= 80.0
    return policy


def generate(trainer) -> dict:
    """One generation batch of two prompts x GROUP samples, sampled under seed 0."""
    trainer.model.train()
    torch.manual_seed(0)
    return trainer._generate_and_score_completions([{"prompt": p} for p in PROMPTS[:2] for _ in range(GROUP)])


def completion_lengths(out: dict) -> list[int]:
    return out["completion_mask"].sum(-1).tolist()


# --- GRPO -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale_rewards, extra_reward", [("group", False), ("batch", False), ("none", False), ("group", True)]
)
def test_sparse_advantages_equal_trl_grpo(tmp_path, tok, reward_model, scale_rewards, extra_reward):
    """Sparse rewards: A_it = TRL's per-completion advantage on every token, for each scale_rewards
    (and with two more weighted TRL reward functions, a function and a reward model, whose rewards
    land on the last token)."""
    sparse = build_rewarder("sparse", reward_model=reward_model, tokenizer=tok, device="cpu")

    def reward_model_score(prompts, completions, **kwargs):
        """The reward model's score; an empty completion gets the batch's lowest (as the trainer gives it)."""
        kept = [i for i, c in enumerate(completions) if c.strip()]
        scores = sparse.score([prompts[i] for i in kept], [completions[i] for i in kept]).sequence_rewards.tolist()
        floor = dict(zip(kept, scores))
        return [floor.get(i, min(scores)) for i in range(len(completions))]

    def length_bonus(prompts, completions, **kwargs):
        return [0.5 * len(c) for c in completions]

    # a second, weighted reward function and a second reward model (with its tokenizer), or nothing
    extra = [length_bonus, tiny_reward_model("llama", tok, seed=5)] if extra_reward else []
    classes = {"reward_processing_classes": [None, tok]} if extra_reward else {}
    weights = {"reward_weights": [2.0, 0.5, 1.5]} if extra_reward else {}  # the rewarder's weight first
    ours = TokenRewardGRPOTrainer(
        eos_prone_policy(tok),
        sparse,
        reward_funcs=extra,
        args=grpo_args(tmp_path / "ours", scale_rewards=scale_rewards, **weights),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tok,
        **classes,
    )
    theirs = GRPOTrainer(
        eos_prone_policy(tok),
        reward_funcs=[reward_model_score, *extra],
        args=grpo_args(tmp_path / "trl", scale_rewards=scale_rewards, **weights),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tok,
        **({"reward_processing_classes": [None, None, tok]} if extra_reward else {}),
    )
    a, b = generate(ours), generate(theirs)
    assert torch.equal(a["completion_ids"], b["completion_ids"])
    mask = a["completion_mask"].bool()
    assert a["advantages"].shape == a["completion_ids"].shape and b["advantages"].dim() == 1
    expected = torch.where(mask, b["advantages"][:, None].expand_as(mask), torch.zeros_like(a["advantages"]))
    torch.testing.assert_close(a["advantages"], expected, atol=1e-6, rtol=0)
    assert b["advantages"].abs().max() > 0.1  # not the trivial all-zero case


def eos_rule(rewards: list[float], text: str, offsets) -> list[float]:
    """By hand: the reward of the first token reaching the end of the text moves to the last token
    (the EOS, when generation ended with one)."""
    rewards = list(rewards)
    completing = next(t for t, (_, end) in enumerate(offsets) if end >= len(text))
    if completing != len(rewards) - 1:
        rewards[-1] += rewards[completing]
        rewards[completing] = 0.0
    return rewards


@pytest.mark.parametrize("baseline", ["group_mean", "leave_one_out"])
def test_red_advantages_equal_a_naive_loop(tmp_path, tok, reward_model, baseline):
    red = build_rewarder("red", reward_model=reward_model, tokenizer=tok, device="cpu")
    trainer = TokenRewardGRPOTrainer(
        eos_prone_policy(tok),
        "red",
        rewarder_resources={"reward_model": reward_model, "tokenizer": tok, "device": "cpu"},
        baseline=baseline,
        args=grpo_args(tmp_path),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tok,
    )
    out = generate(trainer)
    ids = [row[:n].tolist() for row, n in zip(out["completion_ids"], completion_lengths(out))]
    assert 0 < sum(row[-1] == tok.eos_token_id for row in ids) < len(ids)  # both endings occur
    rewards, sequence_rewards = [], []
    for i, row in enumerate(ids):
        text, offsets = offsets_from_ids(tok, row)
        scored = red.score([PROMPTS[i // GROUP]], [text], align_to=[offsets])
        rewards.append(eos_rule(scored.token_rewards(0), text, offsets))
        sequence_rewards.append(float(scored.sequence_rewards[0]))
    returns = [sum(r) for r in rewards]
    metrics, every_token = trainer._metrics["train"], [value for row in rewards for value in row]
    assert metrics["tokenreward/token_reward/mean"][-1] == pytest.approx(statistics.mean(every_token), abs=1e-5)
    assert metrics["tokenreward/token_reward/std"][-1] == pytest.approx(statistics.stdev(every_token), abs=1e-5)
    assert metrics["tokenreward/sequence_reward/mean"][-1] == pytest.approx(
        statistics.mean(sequence_rewards), abs=1e-5
    )
    assert metrics["reward"][-1] == pytest.approx(statistics.mean(returns), abs=1e-5)  # TRL's own metric: the return
    for i, row in enumerate(rewards):
        group = [returns[j] for j in range(len(returns)) if j // GROUP == i // GROUP]
        others = [returns[j] for j in range(len(returns)) if j // GROUP == i // GROUP and j != i]
        for t in range(len(row)):
            to_go = sum(row[t:])
            if baseline == "group_mean":
                expected = (to_go - statistics.mean(group)) / (statistics.stdev(group) + 1e-4)
            else:
                expected = to_go - statistics.mean(others)
            assert float(out["advantages"][i, t]) == pytest.approx(expected, abs=1e-4)
        assert float(out["advantages"][i, len(row) :].abs().sum()) == 0.0
    spread = [
        float(out["advantages"][i, : len(r)].max() - out["advantages"][i, : len(r)].min())
        for i, r in enumerate(rewards)
    ]
    assert max(spread) > 1e-2  # token-level: advantages vary along T
    assert list(trainer._logs["advantages"]) == pytest.approx(
        out["advantages"][:, 0].tolist()
    )  # completions table: A_i1


def test_eos_token_takes_the_completing_tokens_reward(tok, reward_model):
    sparse = build_rewarder("sparse", reward_model=reward_model, tokenizer=tok, device="cpu")
    function = TokenRewardFunction(sparse, tok)
    body = tok(" Paris.", add_special_tokens=False)["input_ids"]
    returns = function(["The capital of France is"] * 2, None, [body + [tok.eos_token_id], body])
    with_eos, truncated = (torch.tensor(function.last.token_rewards(i)) for i in range(2))
    sequence = function.last.sequence_rewards
    score = float(sparse.score(["The capital of France is"], [" Paris."]).sequence_rewards[0])
    assert with_eos.tolist() == pytest.approx([0.0] * len(body) + [score], abs=1e-6)
    assert truncated.tolist() == pytest.approx([0.0] * (len(body) - 1) + [score], abs=1e-6)
    assert returns == pytest.approx([score, score], abs=1e-6) and sequence.tolist() == pytest.approx(
        [score, score], abs=1e-6
    )


def test_conversational_prompts_reach_the_rewarder_as_messages(tmp_path):
    """TRL's conversational prompts: the rewarder scores (messages, generated text), aligned to the
    generated ids; the chat template's end-of-turn token, when generated, is the EOS."""
    template = (
        "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
        "{% if add_generation_prompt %}<bos>assistant:{% endif %}"
    )
    chat = train_tokenizer(chat_template=template)
    red = build_rewarder("red", reward_model=tiny_reward_model("llama", chat, seed=3), tokenizer=chat, device="cpu")
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS]
    trainer = TokenRewardGRPOTrainer(
        tiny_causal_lm("llama", chat, seed=0), red, args=grpo_args(tmp_path), train_dataset=Dataset.from_list(rows),
        processing_class=chat,
    )  # fmt: skip
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions([dict(rows[i // GROUP]) for i in range(2 * GROUP)])
    for i, (ids, n) in enumerate(zip(out["completion_ids"], completion_lengths(out))):
        text, offsets = offsets_from_ids(chat, ids[:n].tolist())
        scored = red.score([rows[i // GROUP]["prompt"]], [text], align_to=[offsets]).token_rewards(0)
        assert trainer.token_reward_function.last.token_rewards(i) == pytest.approx(
            eos_rule(scored, text, offsets), abs=1e-5
        )


def test_three_step_grpo_run_trains_and_logs(tmp_path, tok, reward_model):
    policy = tiny_causal_lm("llama", tok, seed=0)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = TokenRewardGRPOTrainer(
        policy,
        "red",
        rewarder_resources={"reward_model": reward_model, "tokenizer": tok, "device": "cpu"},
        args=grpo_args(tmp_path),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tok,
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [1, 2, 3]
    for h in logged:
        assert {
            "reward",
            "rewards/tokenreward_red/mean",
            "tokenreward/sequence_reward/mean",
            "tokenreward/token_reward/std",
            "entropy",
        } <= set(h)
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_split_a_group_as_trl_does(tmp_path):
    """`accelerate launch --num_processes 2` (gloo on CPU): one prompt's 8 samples split over the two
    ranks; on each rank the token-level advantages equal TRL's (gathered, sliced back)."""
    if shutil.which("accelerate") is None or torch.cuda.is_available():
        pytest.skip("needs the accelerate launcher and a CPU-only machine")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    launch = [
        "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
    ]  # fmt: skip
    script = Path(__file__).with_name("trl_two_processes.py")
    done = subprocess.run([*launch, str(script), str(tmp_path)], check=False, env=env, capture_output=True, text=True)
    if (
        done.returncode != 0
        and re.search(r"exitcode\s*: -\d+", done.stderr)
        and "trl_two_processes.py" not in done.stderr
    ):
        pytest.skip("two local gloo processes could not run here: " + done.stderr[-1500:])  # the machine, not our code
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["processes"] == 2 and r["same_completions"] for r in ranks)
    assert max(r["max_difference"] for r in ranks) <= 1e-6
    group = ranks[0]["trl_advantages"] + ranks[1]["trl_advantages"]
    assert abs(sum(group)) < 1e-4 and abs(sum(ranks[0]["trl_advantages"])) > 1e-2  # one group, across the ranks


@pytest.mark.parametrize("baseline", ["gtpo", "grpo_s", "ktae"])
def test_verifiable_reward_estimators_get_the_policys_entropies_and_the_completion_ids(
    tmp_path, tok, reward_model, baseline
):
    """A 1/0 verifier as the only weighted reward: the advantages equal the registered estimator on the
    verifier's rewards, the completion ids and the entropies of the policy's own Hugging Face forward."""

    def verifier(prompts, completions, completion_ids, **kwargs):  # "correct": an even number of tokens
        return [float(len(ids) % 2 == 0) for ids in completion_ids]

    trainer = TokenRewardGRPOTrainer(
        eos_prone_policy(tok),
        "sparse",
        rewarder_resources={"reward_model": reward_model, "tokenizer": tok, "device": "cpu"},
        baseline=baseline,
        reward_funcs=[verifier],
        args=grpo_args(tmp_path, reward_weights=[0.0, 1.0]),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tok,
    )
    out = generate(trainer)
    mask, lengths = out["completion_mask"].bool(), completion_lengths(out)
    rewards = torch.zeros(mask.shape)
    rewards[torch.arange(len(lengths)), torch.tensor(lengths) - 1] = torch.tensor([float(n % 2 == 0) for n in lengths])
    assert 0 < rewards.sum() < len(lengths)
    prompt_width = out["prompt_ids"].shape[1]
    with torch.no_grad():
        logits = (
            trainer.model(
                input_ids=torch.cat([out["prompt_ids"], out["completion_ids"]], 1),
                attention_mask=torch.cat([out["prompt_mask"], out["completion_mask"]], 1),
            ).logits[:, prompt_width - 1 : -1]
            / trainer.temperature
        )
    entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    batch = AdvantageBatch(
        rewards, mask, group=torch.arange(len(lengths)) // GROUP, entropy=entropy, token_ids=out["completion_ids"]
    )
    want, _ = estimate_advantages(baseline, batch, AdvantageSettings(ktae_ignored_token=tok.eos_token_id))
    torch.testing.assert_close(out["advantages"], want, atol=1e-5, rtol=0)
    assert out["advantages"][mask].abs().max() > 0.1


def test_grpo_bad_arguments_are_named(tmp_path, tok, reward_model):
    kwargs = {
        "args": grpo_args(tmp_path),
        "train_dataset": Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        "processing_class": tok,
    }
    with pytest.raises(ValueError, match="baseline must be one of group_mean, leave_one_out, gtpo, grpo_s, ktae"):
        TokenRewardGRPOTrainer(tiny_causal_lm("llama", tok), "sparse", baseline="mean", **kwargs)
    with pytest.raises(ValueError, match="pass `rewarder`"):
        TokenRewardGRPOTrainer(tiny_causal_lm("llama", tok), **kwargs)
    with pytest.raises(ValueError, match="needs --reward-model"):
        TokenRewardGRPOTrainer(tiny_causal_lm("llama", tok), "red", **kwargs)


# --- the DPO family ----------------------------------------------------------------------

PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": " The answer is 42.", "rejected": " You are stupid."},
    {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " Lima, the capital of Peru."},
    {"prompt": "The first five primes are", "chosen": " 2, 3, 5, 7, 11.", "rejected": " 2, 3, 5, 7, 9."},
    {"prompt": "Say hello.", "chosen": " Hello world!", "rejected": " This is a terrible, awful question."},
]


def save_model(path: Path, tokenizer, seed: int) -> str:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(
        tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, max_position_embeddings=512)
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("trl-dpo")
    return {
        "root": root,
        **{name: save_model(root / name, tok, seed) for name, seed in (("policy", 0), ("reference", 1), ("guide", 2))},
    }


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def dpo_args(config_class, out: Path, **overrides):
    values = {
        "output_dir": str(out),
        "per_device_train_batch_size": len(PAIRS),
        "report_to": [],
        "max_length": None,
        "use_cpu": True,
        "bf16": False,
        "save_strategy": "no",
        "max_steps": 3,
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "seed": 0,
    }
    return config_class(**{**values, **overrides})


def reference_model(models):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(models["reference"])


def tokenreward_first_loss(
    models, tmp_path: Path, method: str, rows: list[dict], tokenizer_dir: str | None = None, **overrides
) -> float:
    """Step 1 of tokenreward's own preference trainer on every pair at once."""
    out = tmp_path / f"tokenreward-{method}"
    config = PreferenceConfig(
        out=str(out),
        data=write_rows(tmp_path / f"{method}.jsonl", rows),
        policy=models["policy"],
        reference=models["reference"],
        tokenizer=tokenizer_dir,
        steps=1,
        batch_size=len(rows),
        progress=False,
        **overrides,
    )
    run(config, method)
    return read_jsonl(out / "log.jsonl")[0]["loss"]


def first_loss_then_train(trainer) -> tuple[float, list[dict]]:
    """The loss of the first batch (no step taken), then a 3-step run; asserts the weights moved."""
    with torch.no_grad():
        first = float(trainer.compute_loss(trainer.model, next(iter(trainer.get_train_dataloader()))))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    return first, [h for h in trainer.state.log_history if "loss" in h]


CASES = [
    ("dpo_reg", TRegDPOTrainer, TRegDPOConfig, {}, {"alpha": 0.5}),
    ("tdpo1", TDPOTrainer, TDPOConfig, {"tdpo_variant": "tdpo1"}, {}),
    ("tdpo2", TDPOTrainer, TDPOConfig, {}, {}),
    ("tgdpo", TGDPOTrainer, TGDPOConfig, {"guide": True}, {}),
    ("sepo", SePOTrainer, SePOConfig, {"guide": True}, {}),
]


@pytest.mark.parametrize("method, trainer_class, config_class, options, shared", CASES, ids=[c[0] for c in CASES])
def test_dpo_family_step_one_equals_tokenreward_trainer_and_trains(
    tmp_path, tok, models, method, trainer_class, config_class, options, shared
):
    guide = {"guide_policy": models["guide"]} if options.get("guide") else {}
    config_options = {k: v for k, v in options.items() if k != "guide"}
    expected = tokenreward_first_loss(models, tmp_path, method, PAIRS, **guide, **shared)
    args = dpo_args(config_class, tmp_path / "trl", **guide, **config_options, **shared)
    trainer = trainer_class(
        model=models["policy"],
        ref_model=reference_model(models),
        args=args,
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=tok,
    )
    first, logged = first_loss_then_train(trainer)
    assert first == pytest.approx(expected, abs=1e-5)
    assert abs(first - 0.6931471805599453) > 1e-3  # policy and reference differ: not the trivial log 2
    assert [h["step"] for h in logged] == [1, 2, 3] and logged[0]["loss"] == pytest.approx(first, abs=1e-5)
    assert {"rewards/margins", "rewards/accuracies", "logps/chosen"} <= set(logged[0])


def test_treg_with_alpha_zero_is_trl_dpo_step_for_step(tmp_path, tok, models):
    ours = TRegDPOTrainer(
        model=models["policy"],
        ref_model=reference_model(models),
        args=dpo_args(TRegDPOConfig, tmp_path / "treg", alpha=0.0),
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=tok,
    )
    theirs = DPOTrainer(
        model=models["policy"],
        ref_model=reference_model(models),
        args=dpo_args(DPOConfig, tmp_path / "dpo"),
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=tok,
    )
    ours.train()
    theirs.train()
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (ours, theirs)]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], abs=1e-5)
    assert losses[0][-1] < losses[0][0]
    for (name, a), b in zip(ours.model.named_parameters(), theirs.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def conversational(pair: dict, implicit_prompt: bool) -> dict:
    """A pair in TRL's conversational format, the prompt explicit or shared by chosen and rejected."""
    user = [{"role": "user", "content": pair["prompt"]}]
    chosen, rejected = ([{"role": "assistant", "content": pair[side]}] for side in ("chosen", "rejected"))
    if implicit_prompt:
        return {"chosen": user + chosen, "rejected": user + rejected}
    return {"prompt": user, "chosen": chosen, "rejected": rejected}


@pytest.mark.parametrize("implicit_prompt", [False, True], ids=["explicit-prompt", "implicit-prompt"])
def test_conversational_rows_as_dpo_trainer_takes_them(tmp_path, models, implicit_prompt):
    template = (
        "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
        "{% if add_generation_prompt %}<bos>assistant:{% endif %}"
    )
    chat = train_tokenizer(chat_template=template)
    chat_dir = tmp_path / "chat-tokenizer"
    chat.save_pretrained(chat_dir)
    rows = [conversational(p, implicit_prompt) for p in PAIRS]
    expected = tokenreward_first_loss(models, tmp_path, "dpo_reg", rows, tokenizer_dir=str(chat_dir))
    trainer = TRegDPOTrainer(
        model=models["policy"],
        ref_model=reference_model(models),
        args=dpo_args(TRegDPOConfig, tmp_path / "trl", max_steps=1, per_device_eval_batch_size=len(rows)),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(rows),
        processing_class=chat,
    )
    first, _ = first_loss_then_train(trainer)
    assert first == pytest.approx(expected, abs=1e-5)
    trainer.model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, next(iter(trainer.get_eval_dataloader()))))
    prepared, fresh = (
        trainer.evaluate(),
        trainer.evaluate(Dataset.from_list(rows)),
    )  # DPOTrainer.evaluate prepares `fresh`
    assert prepared["eval_loss"] == pytest.approx(loss, abs=1e-5) and fresh["eval_loss"] == pytest.approx(
        loss, abs=1e-5
    )
    assert "eval_rewards/margins" in prepared


@pytest.mark.parametrize("truncation_mode", ["keep_start", "keep_end"])
def test_token_columns_follow_trl_truncation(tmp_path, tok, models, truncation_mode):
    """With max_length cutting the pairs, the token columns stay on their tokens: the response-token
    mask is the completion mask without its EOS, position by position."""
    args = dpo_args(TDPOConfig, tmp_path, max_length=16, truncation_mode=truncation_mode)
    trainer = TDPOTrainer(
        model=models["policy"], args=args, train_dataset=Dataset.from_list(PAIRS), processing_class=tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[1] == 16
    completion = batch["completion_mask"].bool()
    expected = completion & (batch["input_ids"] != tok.eos_token_id)
    assert torch.equal(batch["response_tokens"].bool(), expected) and expected.any()
    assert (batch["token_rewards"] == 0).all()  # TDPO reads no token rewards


def test_configs_parse_from_the_command_line_like_trls():
    from trl import TrlParser

    base = ["--output_dir", "out", "--report_to", "none", "--use_cpu", "--bf16", "false"]
    (treg,) = TrlParser((TRegDPOConfig,)).parse_args_and_config(
        [*base, "--alpha", "0.5", "--rewarder_options", '{"batch_size": 4}']
    )
    assert (treg.alpha, treg.beta, treg.token_rewarder, treg.rewarder_options) == (
        0.5,
        0.1,
        "contrastive",
        {"batch_size": 4},
    )
    (sepo,) = TrlParser((SePOConfig,)).parse_args_and_config([*base, "--guide_policy", "guide"])
    assert (sepo.beta, sepo.sepo_ratio, sepo.guide_policy, sepo.token_rewarder) == (1.0, 0.3, "guide", "implicit")
    (tdpo,) = TrlParser((TDPOConfig,)).parse_args_and_config(base)
    (tgdpo,) = TrlParser((TGDPOConfig,)).parse_args_and_config(base)
    assert (tdpo.tdpo_variant, tdpo.alpha, tgdpo.alpha, tgdpo.beta) == ("tdpo2", 0.5, 0.5, 0.1)


def test_dpo_family_bad_configs_are_named(tmp_path, tok, models):
    data = Dataset.from_list(PAIRS)
    with pytest.raises(ValueError, match=r"leave these DPOConfig settings at their defaults: loss_type=\['ipo'\]"):
        TRegDPOTrainer(
            model=models["policy"],
            args=dpo_args(TRegDPOConfig, tmp_path, loss_type=["ipo"]),
            train_dataset=data,
            processing_class=tok,
        )
    with pytest.raises(ValueError, match="set guide_policy in the config"):
        TGDPOTrainer(
            model=models["policy"], args=dpo_args(TGDPOConfig, tmp_path), train_dataset=data, processing_class=tok
        )
    with pytest.raises(TypeError, match="SePOTrainer needs a SePOConfig, got DPOConfig"):
        SePOTrainer(
            model=models["policy"], args=dpo_args(DPOConfig, tmp_path), train_dataset=data, processing_class=tok
        )
    with pytest.raises(ValueError, match="tdpo_variant must be 'tdpo1' or 'tdpo2'"):
        TDPOTrainer(
            model=models["policy"],
            args=dpo_args(TDPOConfig, tmp_path, tdpo_variant="tdpo3"),
            train_dataset=data,
            processing_class=tok,
        )
