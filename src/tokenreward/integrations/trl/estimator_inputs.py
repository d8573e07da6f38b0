"""What the verifiable-reward estimators need beyond the rewards, inside TRL's `GRPOTrainer`:
the sampling policy's per-token entropies (`gtpo`, `grpo_s`: one extra forward pass of the
policy over prompt + completion, without gradient, at TRL's temperature) and the completion
token ids (`ktae`), gathered over every process in TRL's row order."""

from __future__ import annotations

import torch

from tokenreward.losses.advantages import ESTIMATORS, AdvantageSettings

#: registered estimators that compare the 1/0 outcomes of a prompt's samples
VERIFIABLE = ("gtpo", "grpo_s", "ktae")


def verifiable_settings(tokenizer) -> AdvantageSettings:
    """The estimators' defaults, with the EOS id as KTAE's ignored token (the authors zero theirs)."""
    return AdvantageSettings(ktae_ignored_token=tokenizer.eos_token_id)


def completion_entropies(trainer, output: dict) -> torch.Tensor:
    """`[b, T]` entropy of the policy at each completion position of this process's rows (text only)."""
    mode = "train" if trainer.model.training else "eval"
    batch_size = (
        trainer.args.per_device_train_batch_size if mode == "train" else trainer.args.per_device_eval_batch_size
    )
    completion_ids = output["completion_ids"]
    _, entropies, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model,
        torch.cat([output["prompt_ids"], completion_ids], dim=1),
        torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
        completion_ids.size(1),
        batch_size=batch_size,
        compute_entropy=True,
    )
    return entropies


def estimator_inputs(trainer, output: dict, estimator: str) -> dict[str, torch.Tensor]:
    """The `AdvantageBatch` fields `estimator` needs besides rewards, mask and group, every process's
    rows (padded like the rewards)."""
    needs, fields = ESTIMATORS.get(estimator).needs, {}
    if "entropy" in needs:
        fields["entropy"] = completion_entropies(trainer, output)
    if "token_ids" in needs:
        fields["token_ids"] = output["completion_ids"]
    accelerator = trainer.accelerator
    return {k: accelerator.gather(accelerator.pad_across_processes(v, dim=1)) for k, v in fields.items()}
