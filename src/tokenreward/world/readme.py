"""The README.md written into every world directory: its files, formats and measurements."""

from __future__ import annotations

import json
from typing import Any

from tokenreward.world import answers, generate, oracle
from tokenreward.world.families import DEFAULT_FAMILIES, family

TEMPLATE = """# tokenreward world ({size}, seed {seed})

A synthetic assistant domain in which the true credit of every response character is known.
Built by `tokenreward world build --size {size} --seed {seed}`; everything here is plain JSONL
and ordinary Hugging Face folders.

## Files
| path | contents |
|---|---|
| `world.json` | build settings and the measurements below (its presence marks a complete world) |
| `data/prompts.SPLIT.jsonl` | prompt records `{{"id", "family", "prompt", "meta"}}`; SPLIT in sft / reward / rl / test (20 / 40 / 40 of the non-test prompts, test held out) |
| `data/responses.SPLIT.jsonl` | responses: `prompt_id`, `family`, `prompt`, `response`, `kinds` (planted defect kinds), `oracle_score`, `credit_spans` `[[start, end, credit], ...]` (character offsets into `response`), `defects` |
| `data/pairs.SPLIT.jsonl` | preference pairs (TRL format) `prompt`, `chosen`, `rejected`, `chosen_score`, `rejected_score`, their credit spans, `revision` (the oracle's minimal fix of `rejected`), `revision_score`, `revision_credit_spans` |
| `data/policy_pairs.SPLIT.jsonl` | pairs of the SFT policy's own samples (temperature 1) on the reward and test prompts, graded and labelled like `pairs` (no revision); the reward model trains on the reward split's pairs and on these |
| `data/sft.jsonl` | the policy's SFT data, TRL `prompt`/`completion`, revision instructions included |{steps_row}
| `tokenizer/` | byte-level BPE trained on the world's text (`<pad>`, `<eos>`, `<bos>`, `<unk>`) |
| `policy/` | GPT-2-style causal LM after SFT (the policy to improve and the reference model) |
| `reward-model/` | Bradley-Terry reward model (`GPT2ForSequenceClassification`, one label), initialised from the policy, trained on `pairs.reward` and `policy_pairs.reward` |

Prompts are plain strings `User: QUESTION\\nAssistant:`; a response follows the prompt
directly (it starts with a space) and the policy ends it with `<eos>` (not part of the string).

## Families and planted defects
{family_summaries}

Every family can also be verbose, answer nothing, loop, or carry a hostile sentence.

## The oracle (`tokenreward.world.oracle.grade`)
{oracle_doc}
Constants: repeat {repeat}, wrong answer {wrong}, list error {list_error}, misquoted question
{restatement}, hostile threshold
{hostile} (credit = valence / {hostile_scale}), kind words >= {kind}, no answer -{no_answer},
verbosity {rate} per word past the limit (cap {cap}), word limits {limits}.

Preference labels: a simulated labeller prefers `a` with probability
`sigma((score_a - score_b) / {temperature})` (Bradley-Terry on oracle scores).

## Revision instructions (T-REG contrastive prompting)
Format with the prompt string and a response; the rewritten response follows directly.
- `tokenreward.world.generate.REVISION_BETTER` = {better!r}
- `tokenreward.world.generate.REVISION_WORSE` = {worse!r}

The SFT data teaches both: better(defective reply) -> its oracle revision, better(good reply)
-> the same reply, worse(good reply) -> the reply with defects planted.

## Measurements
```
{metrics}
```
"""

#: the files table's row for the stepwise data, in worlds with a family that writes steps
STEPS_ROW = (
    "\n| `data/steps.SPLIT.jsonl` | the responses of the families that write steps (`multistep`) in TRL's "
    "stepwise format (`tokenreward train prm --data`): `prompt_id`, `prompt`, `completions` (the response's "
    "non-blank lines), `labels` (a line is true when every step of the oracle's `step_truth` in it is correct) |"
)


BACKBONE_SECTION = """
## Reward backbone
This world was built with `--reward-backbone`: `reward-model/` is {description}, not the
GPT-2 model the table above names. It reads prompt+response with the backbone's own tokenizer
(saved in `reward-model/`), so rewarders score the backbone's tokens and their rewards reach the
policy's tokens by character offsets. It was trained through LoRA adapters on every linear
layer of every block (the scalar head in full) and saved merged. The recipe and the pairs it
trained on (`reward_backbone` in the measurements):

{recipe}
"""


def describe_reward_model(backbone: dict[str, Any] | None) -> str:
    """One line naming a world's reward model: the pretrained backbone it started from (name,
    parameters, LoRA rank, pairs, prefix loss) or the world's own GPT-2 one."""
    if not backbone:
        return "the world's GPT-2 reward model (initialised from the SFT policy)"
    text = f"backbone {backbone['name']}"
    if "parameters" in backbone:
        training, pairs = backbone["training"], backbone["pairs"]
        text += (
            f" ({_count(backbone['parameters'])} parameters, its own tokenizer), LoRA r {training['lora_r']} "
            f"on {pairs['data_pairs']} data + {pairs['policy_pairs']} policy pairs"
        )
        if training.get("prefix_loss", "none") != "none":
            text += f", prefix loss {training['prefix_loss']}"
    return text


def _count(parameters: int) -> str:
    return f"{parameters / 1e6:.1f}M" if parameters >= 1e6 else f"{parameters:,}"


def render_readme(manifest: dict[str, Any]) -> str:
    """The README of the world whose `world.json` is `manifest` (its families: `sizes.families`;
    a section on the reward backbone when it has one)."""
    readme = _render_template(manifest)
    if "reward_backbone" not in manifest:
        return readme
    backbone = manifest["metrics"].get("reward_backbone", {"name": manifest["reward_backbone"]})
    recipe = {key: backbone[key] for key in ("training", "pairs") if key in backbone}
    return readme + BACKBONE_SECTION.format(
        description=describe_reward_model(backbone), recipe="```\n" + json.dumps(recipe, indent=1) + "\n```"
    )


def _render_template(manifest: dict[str, Any]) -> str:
    families = manifest["sizes"].get("families", DEFAULT_FAMILIES)
    return TEMPLATE.format(
        steps_row=STEPS_ROW if any(family(name).has_steps for name in families) else "",
        family_summaries="\n".join("- " + family(name).summary.replace("\n", "\n  ") for name in families),
        size=manifest["size"],
        seed=manifest["seed"],
        oracle_doc=oracle.documented_rules(families),
        repeat=answers.REPEAT_CREDIT,
        wrong=answers.WRONG_CREDIT,
        list_error=answers.LIST_ERROR_CREDIT,
        restatement=answers.RESTATEMENT_CREDIT,
        hostile=answers.HOSTILE_THRESHOLD,
        hostile_scale=answers.HOSTILE_SCALE,
        kind=answers.KIND_THRESHOLD,
        no_answer=answers.NO_ANSWER_PENALTY,
        rate=answers.VERBOSITY_RATE,
        cap=answers.VERBOSITY_CAP,
        limits=json.dumps({name: family(name).word_limit for name in families}),
        temperature=manifest["label_temperature"],
        better=generate.REVISION_BETTER,
        worse=generate.REVISION_WORSE,
        metrics=json.dumps(manifest["metrics"], indent=1),
    )
