"""The loading flags of the trainers and benchmarks: frozen models in `--dtype` (the trained ones
float32), `--max-batch-tokens` reaching the rewarder, `--device` refused where it cannot be
honoured, bench rl passing the flags to its runs, and old run folders resuming."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tokenreward.bench.rl_methods import resolve_method, trainer_config
from tokenreward.cli import main
from tokenreward.jsonl import read_jsonl
from tokenreward.models import ModelLoading
from tokenreward.preference_data import prepare_preference_data
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, tiny_reward_model
from tokenreward.trainers.loading import run_device
from tokenreward.trainers.ppo import PPOConfig, PPOTrainer
from tokenreward.trainers.preference import PreferenceConfig
from tokenreward.trainers.preference import run as run_preference
from tokenreward.trainers.preference_batches import reference_logps
from tokenreward.trainers.run_folder import RunFolder, fields_at_default
from tokenreward.trainers.sft import SFTConfig

PROMPTS = ["What is 17 + 25?", "The capital of France is", "Hello world!", "You are"]
PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": " The answer is 42.", "rejected": " You are stupid."},
    {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " Lima, of course, or Quito."},
    {"prompt": "Say hello.", "chosen": " Hello world!", "rejected": " This is a terrible, awful question."},
    {"prompt": "Thank you for asking,", "chosen": " I am happy to help.", "rejected": " awful."},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer):
    """Float32 policy, guide policy and reward model, a policy saved in bfloat16, prompts and pairs."""
    root = tmp_path_factory.mktemp("loading")
    for seed, name in enumerate(("policy", "guide", "policy_bf16")):
        torch.manual_seed(seed)
        model = tiny_causal_lm("llama", tokenizer)
        (model.to(torch.bfloat16) if name == "policy_bf16" else model).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    tiny_reward_model("llama", tokenizer).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return root


def ppo_config(files, out, **overrides) -> PPOConfig:
    values = dict(
        policy=files / "policy_bf16",
        reference=files / "policy",
        reward_model=files / "rm",
        prompts=files / "prompts.jsonl",
        out=out,
        steps=2,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_new_tokens=5,
        progress=False,
        learning_rate=1e-3,
    )
    return PPOConfig(**{**values, **overrides})


def dtype_of(model) -> torch.dtype:
    return next(model.parameters()).dtype


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(next(Path(folder).glob("*.safetensors"))))


def test_ppo_frozen_models_take_the_dtype_and_the_trained_ones_stay_float32(files, tmp_path):
    trainer = PPOTrainer(ppo_config(files, tmp_path / "run", dtype="bfloat16", max_batch_tokens=64), "ppo")
    assert dtype_of(trainer.reference) == torch.bfloat16  # frozen, saved float32, --dtype
    assert dtype_of(trainer.rewarder.model) == torch.bfloat16  # the rewarder's reward model, --dtype
    assert dtype_of(trainer.accelerator.unwrap_model(trainer.policy)) == torch.float32  # saved bf16, trained fp32
    assert dtype_of(trainer.accelerator.unwrap_model(trainer.critic)) == torch.float32
    assert trainer.rewarder.max_batch_tokens == 64
    before = {k: v.float() for k, v in weights(files / "policy_bf16").items()}
    out = trainer.train()
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    assert all(torch.isfinite(torch.tensor([r["policy_loss"], r["reward"], r["kl"]])).all() for r in log)
    after = weights(out / "final")
    assert after["model.embed_tokens.weight"].dtype == torch.float32
    assert max(float((after[k] - before[k]).abs().max()) for k in before) > 0


def test_the_token_budget_gives_the_unbatched_scores(files):
    """A rewarder built as a trainer builds it (`loading` with a budget) scores like one without."""
    responses = [" Paris.", " The answer is 42, as 17 + 25 = 42.", " no", " I am happy to help you today."]
    plain = build_rewarder("sparse", {"reward_model": str(files / "rm"), "loading": ModelLoading(device="cpu")})
    budget = build_rewarder(
        "sparse", {"reward_model": str(files / "rm"), "loading": ModelLoading(device="cpu", max_batch_tokens=24)}
    )
    assert budget.max_batch_tokens == 24
    assert len(budget.batches(PROMPTS, responses)) > 1
    torch.testing.assert_close(
        budget.score(PROMPTS, responses).sequence_rewards, plain.score(PROMPTS, responses).sequence_rewards
    )


def test_preference_frozen_models_take_the_dtype(files, tmp_path, monkeypatch):
    """tgdpo with --dtype bfloat16: the reference (twice: the cached log-probs and the implicit
    rewarder's) and the guide load in bf16, the trained policy in float32; the budget reaches the
    token rewarder; the run trains."""
    import tokenreward.preference_data as preference_data

    loads: list[tuple[str, torch.dtype]] = []
    real_load = AutoModelForCausalLM.from_pretrained
    rewarders = []
    real_build = preference_data.build_rewarder

    def spy_load(source, *args, **kwargs):
        model = real_load(source, *args, **kwargs)
        loads.append((Path(source).name, dtype_of(model)))
        return model

    def spy_build(*args, **kwargs):
        rewarders.append(real_build(*args, **kwargs))
        return rewarders[-1]

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy_load)
    monkeypatch.setattr(preference_data, "build_rewarder", spy_build)
    config = PreferenceConfig(
        out=str(tmp_path / "run"),
        data=str(files / "pairs.jsonl"),
        policy=str(files / "policy"),
        guide_policy=str(files / "guide"),
        steps=2,
        batch_size=2,
        learning_rate=1e-3,
        progress=False,
        dtype="bfloat16",
        max_batch_tokens=64,
    )
    run_preference(config, "tgdpo")
    assert Counter(loads) == Counter(
        {("policy", torch.float32): 1, ("policy", torch.bfloat16): 2, ("guide", torch.bfloat16): 1}
    )
    assert [r.max_batch_tokens for r in rewarders] == [64]
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    before, after = weights(files / "policy"), weights(tmp_path / "run" / "final")
    assert max(float((after[k] - before[k]).abs().max()) for k in before) > 0


def test_reference_logps_under_a_token_budget_equal_the_plain_batches(files, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(str(files / "guide")).eval()
    data = prepare_preference_data(PAIRS, tokenizer, "pairs", 512, False)
    plain = reference_logps(model, data, tokenizer.pad_token_id, 2, False)
    budget = reference_logps(model, data, tokenizer.pad_token_id, 4, False, max_tokens=40)
    for side in (0, 1):
        for a, b in zip(plain[side], budget[side]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_loading_flags_are_one_line_errors(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = one_line_error(capsys, ["train", "ppo", "--out", str(tmp_path / "a"), "--device", "cuda"])
    assert "--device cuda: CUDA is not available" in err
    err = one_line_error(capsys, ["bench", "rl", "--out", str(tmp_path / "b"), "--device", "cuda"])
    assert "--device cuda: CUDA is not available" in err
    sft = ["train", "sft", "--out", str(tmp_path / "c"), "--data", "d.jsonl", "--policy", str(files / "policy")]
    err = one_line_error(capsys, [*sft, "--dtype", "float16"])
    assert "--dtype float16" in err and "float32" in err and "--bf16" in err
    err = one_line_error(
        capsys,
        ["train", "reward-model", "--out", str(tmp_path / "d"), "--data", "p", "--model", "m"]
        + ["--max-batch-tokens", "64"],
    )
    assert "--max-batch-tokens 64" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    assert SFTConfig(out=tmp_path, data="d", policy="p", dtype="float32").dtype == "float32"  # float32 is accepted


class FakeAccelerator:
    def __init__(self, cpu: bool, device: str = "cpu", processes: int = 1):
        self.cpu, self.device, self.num_processes = cpu, torch.device(device), processes


def test_the_run_device_must_be_accelerates(files, tmp_path):
    config = ppo_config(files, tmp_path, device="cpu")
    assert run_device(config, FakeAccelerator).cpu is True  # --device cpu: accelerate on the CPU
    with pytest.raises(ValueError, match=r"--device cpu: this process runs on cuda:0"):
        run_device(config, lambda cpu: FakeAccelerator(cpu, "cuda:0"))
    sharded = ppo_config(files, tmp_path, device_map="auto")
    with pytest.raises(ValueError, match=r"--device-map auto .* 2 processes"):
        run_device(sharded, lambda cpu: FakeAccelerator(cpu, processes=2))
    assert run_device(sharded, FakeAccelerator).num_processes == 1


def test_bench_rl_passes_the_loading_flags_to_each_trainer(small_world, tmp_path):
    world = Path(small_world.root)
    loading = ModelLoading(dtype="bfloat16", device="cpu", max_batch_tokens=128)
    ppo = trainer_config(resolve_method("ppo-red"), world, 3, 1, tmp_path / "p", {}, False, loading)
    assert (ppo.dtype, ppo.device, ppo.max_batch_tokens, ppo.rewarder) == ("bfloat16", "cpu", 128, "red")
    figa = trainer_config(resolve_method("figa"), world, 3, 1, tmp_path / "f", {}, False, loading)
    assert (figa.dtype, figa.device, figa.max_batch_tokens) == ("auto", "cpu", None)  # figa loads nothing frozen
    override = trainer_config(
        resolve_method("rloo"), world, 3, 1, tmp_path / "r", {"dtype": "float16"}, False, loading
    )
    assert override.dtype == "float16"  # --trainer-options win


def test_bench_rl_dtype_reaches_the_runs_and_the_evaluation(small_world, tmp_path):
    from tokenreward.bench.rl import RLBenchConfig
    from tokenreward.bench.rl import run as bench_rl

    options = ["batch_size=2", "mini_batch_size=2", "max_new_tokens=4", "ppo_epochs=1"]
    config = RLBenchConfig(
        out=tmp_path / "bench", methods=["rloo"], seeds=1, steps=1, world=Path(small_world.root), baseline="rloo",
        eval_prompts=2, samples=0, trainer_options=options + ["samples_per_prompt=2"], dtype="bfloat16",
    )  # fmt: skip
    bench_rl(config)
    run_dir = tmp_path / "bench" / "rloo" / "seed-0"
    recorded = json.loads((run_dir / "run.json").read_text())
    assert recorded["dtype"] == "bfloat16"
    assert json.loads((run_dir / "done.json").read_text())["config"]["dtype"] == "bfloat16"
    assert json.loads((run_dir / "eval.json").read_text())["settings"]["dtype"] == "bfloat16"


def test_a_run_recorded_without_the_new_settings_resumes(tmp_path):
    """run.json of an older release lacks the loading fields: at their defaults they are no change."""
    config = PPOConfig(out=tmp_path, prompts=tmp_path / "p.jsonl", policy=tmp_path)
    settings = json.loads(json.dumps({"seed": 0, "dtype": "auto", "device_map": None}))
    (tmp_path / "run.json").write_text(json.dumps({"seed": 0}))
    RunFolder(tmp_path, settings, resume=True, main=True, at_default=fields_at_default(config))
    with pytest.raises(ValueError, match="dtype: None -> 'bfloat16'"):
        changed = {**settings, "dtype": "bfloat16"}
        RunFolder(
            tmp_path,
            changed,
            resume=True,
            main=True,
            at_default=fields_at_default(PPOConfig(out=tmp_path, dtype="bfloat16")),
        )
