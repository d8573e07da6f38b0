"""TLCR's token discriminator: the soft-label loss (Eq. 6) and its held-out metrics.

`D(y_t | x, y_<t) = sigma(z_t)` is the probability that token `t` is positive; labels are
`p_t` in {0 (negative), 0.5 (neutral), 1 (positive)}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_label_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 6 averaged over the labelled tokens:
    `mean_t [ -p_t log sigma(z_t) - (1 - p_t) log(1 - sigma(z_t)) ]` over `mask`."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    mask = mask.bool()
    return losses[mask].sum() / mask.sum().clamp_min(1)


def discriminator_metrics(probs: torch.Tensor, labels: torch.Tensor, band: float = 0.6) -> dict[str, float]:
    """Token accuracies of `D` on flat tensors of probabilities and labels.

    - `accuracy`: on the positive and negative tokens, `[D > 0.5] == [p = 1]` (the paper's
      81.4% is a token-level preference accuracy; neutral tokens have no binary answer);
    - `accuracy_positive`, `accuracy_negative` and their mean `balanced_accuracy`;
    - `accuracy_3class`: every token, with the TLCR_fixed rule (neutral when
      `max(D, 1 - D) < band`, else the larger class);
    - `neutral_abs_reward`: mean `|2D - 1|` on neutral tokens (0 is ideal);
    - token counts per class."""
    probs, labels = probs.float().reshape(-1), labels.float().reshape(-1)
    positive, negative, neutral = labels == 1.0, labels == 0.0, labels == 0.5
    predicted_positive = probs > 0.5
    confident = torch.maximum(probs, 1 - probs) >= band
    predicted = torch.where(confident, predicted_positive.float(), torch.full_like(probs, 0.5))

    def mean(values: torch.Tensor) -> float:
        return float(values.float().mean()) if values.numel() else float("nan")

    pos_acc, neg_acc = mean(predicted_positive[positive]), mean(~predicted_positive[negative])
    return {
        "accuracy": mean(predicted_positive[positive | negative] == positive[positive | negative]),
        "accuracy_positive": pos_acc,
        "accuracy_negative": neg_acc,
        "balanced_accuracy": (pos_acc + neg_acc) / 2,
        "accuracy_3class": mean(predicted == labels),
        "neutral_abs_reward": mean((2 * probs[neutral] - 1).abs()),
        "tokens_positive": int(positive.sum()),
        "tokens_negative": int(negative.sum()),
        "tokens_neutral": int(neutral.sum()),
    }
