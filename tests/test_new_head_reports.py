"""No Hugging Face missing-weights report for a head tokenreward creates on purpose (a
discriminator's token head on a causal LM); the report stays for a folder that should hold one.
The loads run in one fresh interpreter, whose output is what a user's terminal shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tokenreward.rewarders.tlcr import load_discriminator
from tokenreward.testing import tiny_causal_lm

SCRIPT = """
import sys
from transformers import AutoModelForTokenClassification
from tokenreward.rewarders.tlcr import load_discriminator
lm, headless = sys.argv[1:]
for name, load in (
    ("hf", lambda: AutoModelForTokenClassification.from_pretrained(lm, num_labels=1)),
    ("ours", lambda: load_discriminator(lm)),
    ("headless", lambda: load_discriminator(headless)),
):
    print(f"@@{name}", file=sys.stderr, flush=True)
    load()
    sys.stderr.flush()
"""


def sections(*paths: str) -> dict[str, str]:
    """Each load's stderr and stdout."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, *paths], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "MISSING" not in done.stdout
    parts = done.stderr.split("@@")[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def test_missing_weights_report_only_where_a_head_should_exist(tmp_path, tokenizer):
    from safetensors.torch import load_file, save_file

    lm = tmp_path / "lm"
    tiny_causal_lm("llama", tokenizer, seed=0).save_pretrained(lm)
    load_discriminator(lm).save_pretrained(tmp_path / "headless")
    weights = tmp_path / "headless" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("score.")}, weights)
    out = sections(str(lm), str(tmp_path / "headless"))
    assert set(out) == {"hf", "ours", "headless"}
    assert "MISSING" in out["hf"]  # Hugging Face reports the head it creates
    assert "MISSING" not in out["ours"]  # a discriminator's head on a causal LM is new by design
    assert "MISSING" in out["headless"]  # a discriminator folder without its head is still reported
