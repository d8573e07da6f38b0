"""Every trainer on the run harness: two processes give one process's weights and only the main
one writes; a run killed with SIGKILL anywhere resumes to bit-identical weights and log lines;
a started or finished run is never overwritten without --resume. On resume a run's length
(`--steps` / `--epochs`) changes only where the learning rate does not depend on it (the run then
goes on exactly as an unbroken run of the new length), `--resume` alone takes the recorded
settings, and an input file changed since the run started is refused.

Each trainer runs 2 steps on tiny models built here (ppo_synthetic on the small world)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from tokenreward.cli import main
from tokenreward.labels import label_pair
from tokenreward.testing import tiny_causal_lm, tiny_reward_model, train_tokenizer

HERE = Path(__file__).parent
PAIRS = [
    {
        "prompt": f"Question {k}: what is {k} + {k}?",
        "chosen": f" It is {2 * k}.",
        "rejected": f" It is {2 * k + 1}, sadly.",
    }
    for k in range(8)
]
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "GLOO_SOCKET_IFNAME": "lo",
    "MASTER_ADDR": "127.0.0.1",
    "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]),
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def save_without_dropout(model, tokenizer, folder: Path) -> None:
    """Saved with dropout 0: a data-parallel run equals one process only when the forward pass
    draws nothing at random (with dropout the masks depend on the batch layout)."""
    model.config.update({"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "classifier_dropout": 0.0})
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    tokenizer = train_tokenizer()
    save_without_dropout(tiny_causal_lm("gpt2", tokenizer), tokenizer, root / "policy")
    save_without_dropout(tiny_reward_model("gpt2", tokenizer), tokenizer, root / "rm")
    write_jsonl(root / "prompts.jsonl", [{"prompt": p["prompt"]} for p in PAIRS])
    write_jsonl(root / "sft.jsonl", [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS])
    write_jsonl(root / "pairs.jsonl", PAIRS)
    write_jsonl(
        root / "labels.jsonl", [label_pair(tokenizer, p["prompt"], p["rejected"], p["chosen"]) for p in PAIRS[:4]]
    )
    return root


def synthetic_labels(world, folder: Path) -> Path:
    from tokenreward.models import load_tokenizer

    tokenizer = load_tokenizer(str(world.tokenizer_dir))
    records = [label_pair(tokenizer, p["prompt"], p["rejected"], p["revision"]) for p in world.pairs("reward")[:8]]
    return write_jsonl(folder / "synthetic-labels.jsonl", records)


PPO = [
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--mini-batch-size",
    "4",
    "--ppo-epochs",
    "1",
    "--max-new-tokens",
    "6",
    "--learning-rate",
    "1e-3",
    "--save-every",
    "1",
]


def arguments(name: str, root: Path, request) -> list[str]:
    """`tokenreward train NAME ...` for 2 steps, checkpointing after each (`NAME+lora`: with LoRA
    adapters of rank 4, the reference, where one is needed, the policy with adapters off; PPO's
    critic a value head on the policy itself)."""
    if name.endswith(LORA_SUFFIX):
        shared_critic = ["--critic-init", "shared"] if name == f"ppo{LORA_SUFFIX}" else []
        lora = ["--lora-r", "4", "--lora-alpha", "8"]
        return [*arguments(name.removesuffix(LORA_SUFFIX), root, request), *lora, *shared_critic]
    tiny_ppo = [
        "--policy",
        str(root / "policy"),
        "--reward-model",
        str(root / "rm"),
        "--prompts",
        str(root / "prompts.jsonl"),
    ]
    preference = [
        "--data",
        str(root / "pairs.jsonl"),
        "--policy",
        str(root / "policy"),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--learning-rate",
        "1e-3",
        "--save-every",
        "1",
    ]
    table = {
        "ppo": [*tiny_ppo, *PPO, "--critic-learning-rate", "1e-3"],
        "remax": [*tiny_ppo, *PPO],
        "rloo": [*tiny_ppo, *PPO[:2], "--batch-size", "2", "--samples-per-prompt", "2", *PPO[4:]],
        "dpo": preference,
        "dpo_reg": preference,
        "figa": [
            "--labels",
            str(root / "labels.jsonl"),
            "--policy",
            str(root / "policy"),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--learning-rate",
            "1e-3",
            "--save-every",
            "1",
        ],
        "discriminator": [
            "--labels",
            str(root / "labels.jsonl"),
            "--backbone",
            str(root / "policy"),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--eval-fraction",
            "0",
            "--log-every",
            "1",
            "--learning-rate",
            "1e-3",
            "--save-every",
            "1",
        ],
        "sft": [
            "--data",
            str(root / "sft.jsonl"),
            "--policy",
            str(root / "policy"),
            "--batch-size",
            "4",
            "--save-every",
            "1",
        ],
        "reward-model": [
            "--data",
            str(root / "pairs.jsonl"),
            "--model",
            str(root / "rm"),
            "--batch-size",
            "4",
            "--save-every",
            "1",
        ],
    }
    if name == "ppo_synthetic":
        world = request.getfixturevalue("small_world")
        return [
            "--world",
            str(world.root),
            "--labels",
            str(synthetic_labels(world, root)),
            "--rm-epochs",
            "1",
            "--rm-batch-size",
            "4",
            *PPO,
        ]
    return table[name]


TRAINERS = ["ppo", "remax", "rloo", "ppo_synthetic", "dpo", "dpo_reg", "figa", "discriminator", "sft", "reward-model"]
LORA_SUFFIX = "+lora"
LORA_TRAINERS = [f"{name}{LORA_SUFFIX}" for name in ("ppo", "dpo", "figa", "discriminator", "sft", "reward-model")]


def command(name: str, root: Path, request, out: Path, *extra: str) -> list[str]:
    trainer = name.removesuffix(LORA_SUFFIX)
    return ["train", trainer, *arguments(name, root, request), "--out", str(out), "--no-progress", *extra]


def final_weights(out: Path, final: str = "final") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted((out / final).glob("*.safetensors"))
    assert files, f"no final model in {out}"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def log_lines(out: Path) -> list[dict]:
    """The log without wall-clock fields."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(script: list[str], env: dict) -> subprocess.CompletedProcess:
    args = [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(free_port()),
        *script,
    ]
    return subprocess.run(args, env=env, capture_output=True, text=True)


GLOO_CHECK = """
import torch
from accelerate import Accelerator
acc = Accelerator(cpu=True)
total = acc.reduce(torch.tensor([float(acc.process_index + 1)]), "sum")
assert acc.num_processes == 2 and float(total) == 3.0, (acc.num_processes, total)
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_process():
    """Every run of this module, in this process and in the launched ones, on one torch thread:
    the comparisons are to 1e-5 or bit for bit, and sums over another thread count round
    differently (which Adam turns into a full step on gradients that are zero in theory)."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory):
    """A check made before any two-process run: can this machine run two local gloo processes?"""
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate launcher is not installed")
    if torch.cuda.is_available():
        pytest.skip("these runs compare CPU processes (gloo); this machine has a GPU")
    script = tmp_path_factory.mktemp("gloo") / "check.py"
    script.write_text(GLOO_CHECK)
    for _ in range(3):  # a loaded machine may time out a rendezvous: try a fresh port
        done = launch([str(script)], ENV)
        if done.returncode == 0:
            break
        time.sleep(1)
    if done.returncode != 0:
        causes = [
            line for line in done.stderr.splitlines() if re.search(r"Error|error|terminate|Exception|Abort", line)
        ]
        pytest.skip(
            "this machine cannot run two local gloo processes (checked before the run): " + "\n".join(causes[:20])
        )


@pytest.fixture(scope="module")
def unbroken(inputs, request, tmp_path_factory):
    """One unbroken single-process run per trainer (in this process), made on first use;
    `unbroken(name, "--gradient-accumulation", "2")` another with those flags."""
    runs: dict[tuple, Path] = {}

    def get(name: str, *extra: str) -> Path:
        if (name, extra) not in runs:
            out = tmp_path_factory.mktemp("unbroken") / name
            fresh_accelerate_state()
            assert main(command(name, inputs, request, out, *extra)) == 0
            runs[name, extra] = out
        return runs[name, extra]

    return get


def fresh_accelerate_state() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def two_process_runs(inputs, request, two_processes, tmp_path_factory):
    """Every trainer's run under one `accelerate launch --num_processes 2` (one start-up for all),
    with the files each rank wrote; (exit status, launcher output, run folders, write probe folder)."""
    return launch_plan(TRAINERS, inputs, request, tmp_path_factory)


@pytest.fixture(scope="module")
def two_process_lora_runs(inputs, request, two_processes, tmp_path_factory):
    """`two_process_runs` of the LoRA trainers."""
    return launch_plan(LORA_TRAINERS, inputs, request, tmp_path_factory)


def launch_plan(names: list[str], inputs: Path, request, tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    outs = {name: root / name for name in names}
    plan = root / "plan.json"
    plan.write_text(json.dumps([command(name, inputs, request, outs[name]) for name in names]))
    probe = root / "writes"
    probe.mkdir()
    done = launch([str(HERE / "write_probe.py"), str(plan)], {**ENV, "WRITE_PROBE_DIR": str(probe)})
    return done, outs, probe


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINERS + LORA_TRAINERS)
def test_two_processes_equal_one_and_only_the_main_process_writes(name, unbroken, request):
    lora = name in LORA_TRAINERS
    done, outs, probe = request.getfixturevalue("two_process_lora_runs" if lora else "two_process_runs")
    out = outs[name]
    finished = (out / "done").exists()
    causes = [line for line in done.stderr.splitlines() if re.search(r"Error|error:|Exception|File \"", line)]
    assert finished, f"{name} did not finish under two processes (a rank failed):\n" + "\n".join(causes[:60])
    logs = log_lines(unbroken(name)), log_lines(out)
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]]
    for key, value in logs[0][0].items():  # the first step: every logged figure (rollouts, losses, statistics)
        assert logs[1][0][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for one, two in zip(*logs):
        assert one.get("loss") == pytest.approx(two.get("loss"), abs=1e-5)
    # Adam turns the last bits of a gradient that is zero in exact arithmetic (e.g. ln_f.bias under a
    # Bradley-Terry loss) into a full step, so the weights are compared with one process that sums
    # the same two halves of each batch (micro-batches = the processes' shards)
    # (ppo_synthetic: its reward model so; its PPO stage takes contiguous shares, like ppo, whose weights are compared)
    same_halves = (
        unbroken(name)
        if name.removesuffix(LORA_SUFFIX) in ("ppo", "remax", "rloo")
        else unbroken(name, "--gradient-accumulation", "2")
    )
    final = "synthetic-reward-model/final" if name == "ppo_synthetic" else "final"
    a, b = final_weights(same_halves, final), final_weights(out, final)
    assert a.keys() == b.keys()
    assert (out / final / "adapter_config.json").is_file() == lora  # a LoRA run's final holds its adapter
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5, rtol=0), key
    inside = {
        rank: [p for p in (probe / f"rank-{rank}.txt").read_text().splitlines() if p.startswith(str(out) + os.sep)]
        for rank in (0, 1)
        if (probe / f"rank-{rank}.txt").exists()
    }
    assert any("checkpoints" in p for p in inside[0]) and any("final" in p for p in inside[0])
    assert not inside.get(1), f"rank 1 wrote into the run folder: {inside[1][:5]}"


def windows(whole: Path) -> tuple[float, float]:
    """Seconds the unbroken run took from its start (run.json) to its first checkpoint, and
    from there to its end: the ranges the kills are drawn from."""
    started = (whole / "run.json").stat().st_mtime
    first = (whole / "checkpoints" / "step-1" / "state.pt").stat().st_mtime
    return max(first - started, 0.01), max((whole / "done").stat().st_mtime - first, 0.01)


def run_in_child(args: list[str]) -> subprocess.Popen:
    """`tokenreward ARGS` in a child process of its own (started afresh, not forked: a fork of
    this multi-threaded process can deadlock in the child's OpenMP pool), with this process's torch
    thread count so that its sums round as the in-process runs' do."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, "-m", "tokenreward.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def kill_at_random_point(args: list[str], out: Path, after_first_checkpoint: bool, delay: float) -> str:
    """Start `tokenreward ARGS` in a child process and SIGKILL it `delay` seconds after the run
    began (before its first checkpoint) or after its first checkpoint; returns what the folder
    held when it died ("ended before the kill" when a busy machine let it finish first)."""
    child = run_in_child(args)
    checkpoint = out / "checkpoints" / "step-1"
    ready = (lambda: checkpoint.is_dir()) if after_first_checkpoint else (lambda: (out / "run.json").is_file())
    deadline = time.monotonic() + 300

    def alive() -> bool:
        return child.poll() is None

    running = True
    while not ready() and (running := alive()) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert running, "the run ended before it could be killed"
    stop = time.monotonic() + delay
    while time.monotonic() < stop and (after_first_checkpoint or not checkpoint.is_dir()):
        time.sleep(0.001)
    child.kill()  # SIGKILL
    status = child.wait()
    if status != -signal.SIGKILL:  # it finished first
        assert status == 0, f"the child failed (exit status {status})"
        return "ended before the kill"
    return "done" if (out / "done").exists() else "checkpoint" if checkpoint.is_dir() else "no checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINERS + LORA_TRAINERS)
def test_sigkill_anywhere_then_resume_is_bit_identical_and_never_overwritten(
    name, inputs, unbroken, request, tmp_path, capsys
):
    whole = unbroken(name)
    assert main(command(name, inputs, request, whole)) == 2
    assert f"{whole} holds a finished run; pass --resume" in capsys.readouterr().err
    rng = random.Random(zlib.crc32(name.encode()))
    for after, window in zip((False, True), windows(whole)):
        wanted = "checkpoint" if after else "no checkpoint"
        for attempt in range(4):  # a busy machine may outrun the drawn moment: draw again, earlier
            out = tmp_path / f"{'after' if after else 'before'}-{attempt}"
            state = kill_at_random_point(
                command(name, inputs, request, out), out, after, rng.uniform(0, 0.8 * window / 2**attempt)
            )
            if state == wanted:
                break
        assert state == wanted, (
            f"{name}: the run was never killed {'after' if after else 'before'} its first checkpoint"
        )
        assert main(command(name, inputs, request, out)) == 2  # a started run is not restarted over
        assert f"{out} holds a started run; pass --resume" in capsys.readouterr().err
        assert main(command(name, inputs, request, out, "--resume")) == 0
        a, b = final_weights(whole), final_weights(out)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{name}, killed {state}"
        assert log_lines(out) == log_lines(whole), f"{name}, killed {state}"


@pytest.mark.parametrize("name", TRAINERS)
def test_every_trainer_checkpoints_by_the_one_rule(name, unbroken):
    """A checkpoint after step s when s % --save-every == 0 or s is the last step (`is_due`):
    every trainer's unbroken 2-step run (--save-every 1) holds step-1 and its last, step-2."""
    from tokenreward.trainers.loop import is_due

    assert [s for s in range(1, 8) if is_due(s, 3, 7)] == [3, 6, 7]
    out = unbroken(name)
    total = max(r["step"] for r in log_lines(out))
    kept = sorted(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*"))
    assert kept == [s for s in range(1, total + 1) if is_due(s, 1, total)] == [1, 2]


@pytest.fixture(scope="module")
def nan_inputs(inputs, tmp_path_factory):
    """The inputs with NaN weights in the policy and the reward model."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    root = tmp_path_factory.mktemp("nan")
    for name, cls in (("policy", AutoModelForCausalLM), ("rm", AutoModelForSequenceClassification)):
        model = cls.from_pretrained(str(inputs / name))
        with torch.no_grad():
            model.get_input_embeddings().weight.fill_(float("nan"))
        model.save_pretrained(root / name)
        shutil.copy(inputs / name / "tokenizer.json", root / name / "tokenizer.json")
        for extra in (inputs / name).glob("*token*"):
            shutil.copy(extra, root / name / extra.name)
    for data in ("prompts.jsonl", "sft.jsonl", "pairs.jsonl", "labels.jsonl"):
        shutil.copy(inputs / data, root / data)
    return root


@pytest.mark.parametrize("name", ["dpo", "figa", "discriminator", "sft", "reward-model"])
def test_a_non_finite_loss_stops_the_run_naming_the_step(name, nan_inputs, request, tmp_path, capsys):
    assert main(command(name, nan_inputs, request, tmp_path / "run")) == 2
    assert re.search(r"step 1: the loss is nan; stopping", capsys.readouterr().err)
    assert not (tmp_path / "run" / "final").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_harness_options_keep_the_loss(inputs, request, tmp_path):
    """Gradient accumulation and gradient checkpointing leave the logged losses as they are (same
    batches, same update up to rounding); bf16 autocast stays close to them."""
    base = log_lines(unbroken_run(inputs, request, tmp_path / "base"))
    for flags, tolerance in (
        (["--gradient-accumulation", "2"], 1e-5),
        (["--gradient-checkpointing"], 1e-5),
        (["--bf16"], 5e-2),
    ):
        out = unbroken_run(inputs, request, tmp_path / "-".join(flags), *flags)
        for a, b in zip(base, log_lines(out)):
            assert b["loss"] == pytest.approx(a["loss"], abs=tolerance), flags
    assert json.loads((tmp_path / "--bf16" / "run.json").read_text())["bf16"] is True


def unbroken_run(inputs, request, out: Path, *flags: str) -> Path:
    fresh_accelerate_state()
    assert main(command("sft", inputs, request, out, *flags)) == 0
    return out


@pytest.mark.parametrize(
    "env, expected", [({"OMP_NUM_THREADS": "3"}, 3), ({"LOCAL_WORLD_SIZE": "2"}, max(1, (os.cpu_count() or 1) // 2))]
)
def test_torch_threads_respect_omp_num_threads(env, expected, monkeypatch):
    from tokenreward.trainers.harness import configure_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        assert configure_threads() == expected == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


EXTENDABLE = ["ppo", "remax", "rloo", "figa", "ppo_synthetic"]  # a constant learning rate after warm-up
FIXED_LENGTH = {"sft": "--epochs", "reward-model": "--epochs", "discriminator": "--epochs", "dpo": "--steps"}


def copy_run(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    return out


def resumed(name, inputs, request, out, *extra) -> int:
    fresh_accelerate_state()
    return main(command(name, inputs, request, out, *extra))


@pytest.mark.parametrize("name", EXTENDABLE)
def test_a_constant_rate_run_goes_on_to_more_steps_exactly_and_refuses_fewer(
    name, inputs, unbroken, request, tmp_path, capsys
):
    longer = unbroken(name, "--steps", "4")
    out = tmp_path / "run"  # a run finished after 2 steps
    if name == "ppo_synthetic":  # it records the path of the reward model it trains inside the folder: not moved
        assert resumed(name, inputs, request, out) == 0
    else:
        copy_run(unbroken(name), out)
    refused = (
        "--resume with --steps 1: the run has already trained 2 steps; give at least that many or start a new run"
    )
    assert resumed(name, inputs, request, out, "--resume", "--steps", "1") == 2  # finished after 2 steps
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(refused)
    shutil.rmtree(out / "final")  # now as if killed after its step-2 checkpoint
    (out / "done").unlink()
    assert resumed(name, inputs, request, out, "--resume", "--steps", "1") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(refused)
    assert resumed(name, inputs, request, out, "--resume", "--steps", "3") == 0
    assert [r["step"] for r in log_lines(out)] == [1, 2, 3]
    assert json.loads((out / "run.json").read_text())["steps"] == 3 and (out / "done").is_file()
    assert resumed(name, inputs, request, out, "--resume", "--steps", "4") == 0  # a finished run goes on
    a, b = final_weights(longer), final_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    losses = [r.get("loss") for r in log_lines(longer)]
    assert [r.get("loss") for r in log_lines(out)] == losses


@pytest.mark.parametrize("name", list(FIXED_LENGTH))
def test_a_run_whose_schedule_depends_on_its_length_refuses_another(name, inputs, unbroken, request, tmp_path, capsys):
    flag = FIXED_LENGTH[name]
    out = copy_run(unbroken(name), tmp_path / "run")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    started = json.loads((out / "run.json").read_text())[flag.removeprefix("--")]
    for length in [started + 2] + ([started - 1] if started > 1 else []):
        assert resumed(name, inputs, request, out, "--resume", flag, str(length)) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.endswith(
            f"--resume with {flag} {length}: the run was started with {flag} {started} and its learning-rate "
            "schedule depends on it; start a new run"
        ), last
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_every_preference_method_shares_the_trainer_and_its_rule():
    from tokenreward.losses.preference_methods import PREFERENCE_METHODS
    from tokenreward.trainers import TRAINERS, preference

    names = [name for name, _ in PREFERENCE_METHODS.items()]
    assert "dpo" in names and all(TRAINERS.get(name).run is preference.run for name in names)


def unfinished_copy(source: Path, out: Path) -> Path:
    """A copy of a finished run as it stood at its first checkpoint (killed there)."""
    copy_run(source, out)
    shutil.rmtree(out / "final")
    (out / "done").unlink()
    for later in (out / "checkpoints").glob("step-*"):
        if later.name != "step-1":
            shutil.rmtree(later)
    return out


@pytest.mark.parametrize("name", ["sft", "dpo"])
def test_resume_alone_continues_with_the_recorded_settings(name, inputs, unbroken, request, tmp_path, capsys):
    whole = unbroken(name)
    out = unfinished_copy(whole, tmp_path / "run")
    settings = json.loads((out / "run.json").read_text())
    del settings["inputs"]  # a run.json of an older release: its inputs count as unchanged
    (out / "run.json").write_text(json.dumps(settings))
    fresh_accelerate_state()
    assert main(["train", name, "--out", str(out), "--resume", "--learning-rate", "0.5"]) == 2
    assert (
        f"settings differ from the run's (learning_rate: {settings['learning_rate']} -> 0.5)"
        in capsys.readouterr().err
    )
    fresh_accelerate_state()
    assert main(["train", name, "--out", str(out), "--resume", "--no-progress"]) == 0
    a, b = final_weights(whole), final_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert log_lines(out) == log_lines(whole)


def test_resume_alone_without_a_recorded_run_asks_for_the_required_flags(tmp_path, capsys):
    assert main(["train", "sft", "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "the following arguments are required: --data, --policy" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_an_input_changed_since_the_start_is_refused_naming_it(inputs, request, tmp_path, capsys):
    pairs = [json.loads(line) for line in (inputs / "pairs.jsonl").read_text().splitlines()]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    args = command("dpo", inputs, request, tmp_path / "run")
    args[args.index("--data") + 1] = str(data)
    fresh_accelerate_state()
    assert main(args) == 0
    out = unfinished_copy(tmp_path / "run", tmp_path / "killed")
    args[args.index("--out") + 1] = str(out)
    swapped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs]
    data.write_text("".join(json.dumps(p) + "\n" for p in swapped))
    assert main([*args, "--resume"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(
            f"--resume: --data {data} changed since the run started (size/sha256 differ); restore it or start a new run"
        )
    )
    assert not (out / "final").exists()
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    fresh_accelerate_state()
    assert main([*args, "--resume"]) == 0
    a, b = final_weights(tmp_path / "run"), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
