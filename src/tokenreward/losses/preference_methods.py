"""The preference-method registry: one entry per method (dpo, simpo, dpo_reg, simpo_reg, tdpo1,
tdpo2, tgdpo, sepo), each declaring what it reads besides the policy's log-probs and computing
its loss from the pure functions in `tokenreward.losses.preference` (docs/methods.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tokenreward.errors import UserInputError
from tokenreward.losses.preference import (
    dpo_logits,
    logistic_loss,
    masked_row_sums,
    sepo_selected_means,
    sequence_kl,
    simpo_logits,
    tdpo1_loss,
    tdpo2_loss,
    tgdpo_loss,
    token_regulariser,
    treg_loss,
)
from tokenreward.registry import Registry

Pair = tuple[torch.Tensor, torch.Tensor]  # (chosen, rejected)


@dataclass(frozen=True)
class PairBatch:
    """A batch of pairs in the shifted frame (column `t` predicts input token `t + 1`), each
    field a (chosen, rejected) pair of tensors."""

    logps: Pair  # log pi(y_t | x, y_<t), [B, T]
    mask: Pair  # completion positions (the loss mask), float [B, T]
    tokens: Pair  # response-token positions (what SePO selects among), bool [B, T]
    reference: Pair | None = None  # log ref(y_t | x, y_<t), [B, T]; methods with needs.reference_logps
    rewards: Pair | None = None  # token rewards on the completion positions, [B, T]; needs.token_rewarder
    kl: Pair | None = None  # per-token KL(ref || pi) over the vocabulary, [B, T]; needs.reference_logits

    @classmethod
    def from_stacked(
        cls,
        logps: torch.Tensor,
        mask: torch.Tensor,
        tokens: torch.Tensor,
        reference: torch.Tensor | None = None,
        rewards: torch.Tensor | None = None,
        kl: torch.Tensor | None = None,
    ) -> PairBatch:
        """The batch of `[2B, T]` tensors whose first `B` rows are the chosen responses and the
        last `B` the rejected ones (the layout of a trainer's padded pair batch)."""
        return cls(
            *(None if t is None else chosen_and_rejected(t) for t in (logps, mask, tokens, reference, rewards, kl))
        )


def chosen_and_rejected(stacked: torch.Tensor) -> Pair:
    """`(stacked[:B], stacked[B:])` of a `[2B, ...]` tensor: chosen rows first, then rejected."""
    half = stacked.shape[0] // 2
    return stacked[:half], stacked[half:]


@dataclass(frozen=True)
class PreferenceSettings:
    """A method's hyper-parameters (`alpha` is T-REG's weight, TDPO2's alpha or TGDPO's a)."""

    beta: float
    alpha: float | None = None
    gamma: float = 1.0  # SimPO's target margin
    sepo_ratio: float = 0.3  # SePO's kept fraction of tokens

    def __post_init__(self):
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise UserInputError(f"beta must be a finite number > 0, got {self.beta}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise UserInputError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if not math.isfinite(self.gamma):
            raise UserInputError(f"gamma must be finite, got {self.gamma}")
        if not 0.0 < self.sepo_ratio <= 1.0:
            raise UserInputError(f"sepo_ratio must lie in (0, 1], got {self.sepo_ratio}")


@dataclass(frozen=True)
class PreferenceLoss:
    losses: torch.Tensor  # per-pair losses [B]; the trainer takes their mean
    reward_chosen: torch.Tensor  # the method's implicit reward of y_w [B], detached
    reward_rejected: torch.Tensor  # of y_l [B], detached
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # the method's own terms [B], detached


@dataclass(frozen=True)
class Needs:
    """What a method reads besides the policy's log-probs."""

    reference_logps: bool = True  # per-token reference log-probs (computed once, cached)
    reference_logits: bool = False  # full reference distributions every step (TDPO's sequence KL)
    token_rewarder: str | None = None  # default token rewarder, None when the method uses none


#: settings only some methods read (the trainer's flags): giving one to a method that does not read it is an error
TOKEN_REWARD_SETTINGS = ("token_rewarder", "guide_policy", "reward_model")
METHOD_SPECIFIC_SETTINGS = ("alpha", "gamma", "sepo_ratio", *TOKEN_REWARD_SETTINGS)


@dataclass(frozen=True)
class PreferenceMethod:
    help: str
    needs: Needs
    beta: float  # default beta
    alpha: float | None  # default alpha; None: the method has none
    loss: Callable[[PairBatch, PreferenceSettings], PreferenceLoss]
    reads: tuple[str, ...] = ()  # PreferenceSettings fields besides beta and alpha the loss reads (gamma, sepo_ratio)

    @property
    def uses(self) -> frozenset[str]:
        """The method-specific settings (`METHOD_SPECIFIC_SETTINGS`) this method reads: `alpha`
        when it has one, its `reads`, and the token-reward inputs when it uses token rewards."""
        token_inputs = TOKEN_REWARD_SETTINGS if self.needs.token_rewarder else ()
        return frozenset((*(("alpha",) if self.alpha is not None else ()), *self.reads, *token_inputs))

    def settings(
        self, beta: float | None = None, alpha: float | None = None, gamma: float = 1.0, sepo_ratio: float = 0.3
    ) -> PreferenceSettings:
        """Settings with this method's defaults for what is not given."""
        if alpha is not None and self.alpha is None:
            raise UserInputError("this method has no alpha")
        return PreferenceSettings(
            self.beta if beta is None else beta, self.alpha if alpha is None else alpha, gamma, sepo_ratio
        )


PREFERENCE_METHODS: Registry[PreferenceMethod] = Registry("preference method", "tokenreward.losses")


def register_preference(
    name: str,
    help: str,
    beta: float,
    alpha: float | None = None,
    needs: Needs = Needs(),
    reads: tuple[str, ...] = (),
):
    def decorator(fn: Callable[[PairBatch, PreferenceSettings], PreferenceLoss]):
        PREFERENCE_METHODS.register(name)(PreferenceMethod(help, needs, beta, alpha, fn, reads))
        return fn

    return decorator


def _sums(batch: PairBatch, field: str = "logps") -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence sums `[B]` of chosen and rejected (`field="reference"`: of the reference log-probs)."""
    values = getattr(batch, field)
    return masked_row_sums(values[0], batch.mask[0]), masked_row_sums(values[1], batch.mask[1])


def _result(losses, reward_w, reward_l, **metrics) -> PreferenceLoss:
    return PreferenceLoss(losses, reward_w.detach(), reward_l.detach(), {k: v.detach() for k, v in metrics.items()})


def _dpo_parts(batch: PairBatch, s: PreferenceSettings):
    """(z, reward_w, reward_l) of DPO: rewards `beta * delta(y)`."""
    (pw, pl), (rw, rl) = _sums(batch), _sums(batch, "reference")
    return dpo_logits(pw, pl, rw, rl, s.beta), s.beta * (pw - rw), s.beta * (pl - rl)


def _simpo_parts(batch: PairBatch, s: PreferenceSettings):
    """(z, reward_w, reward_l) of SimPO: rewards `beta * log pi(y) / |y|`."""
    (pw, pl), (nw, nl) = _sums(batch), (batch.mask[0].sum(-1), batch.mask[1].sum(-1))
    return simpo_logits(pw, pl, nw, nl, s.beta, s.gamma), s.beta * pw / nw, s.beta * pl / nl


def _treg(parts, batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    logits, reward_w, reward_l = parts
    reg_w = token_regulariser(batch.logps[0], batch.rewards[0], batch.mask[0])
    reg_l = token_regulariser(batch.logps[1], batch.rewards[1], batch.mask[1])
    losses = treg_loss(logits, reg_w, reg_l, s.alpha)
    return _result(losses, reward_w, reward_l, regulariser=reg_w + reg_l, sequence_weight=torch.sigmoid(-logits))


def _sequence_kls(batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    return sequence_kl(batch.kl[0], batch.mask[0]), sequence_kl(batch.kl[1], batch.mask[1])


@register_preference("dpo", "DPO: -log sigma(beta (delta_w - delta_l))", beta=0.1)
def dpo_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    logits, reward_w, reward_l = _dpo_parts(batch, s)
    return _result(logistic_loss(logits), reward_w, reward_l)


@register_preference(
    "simpo",
    "SimPO: length-normalised, reference-free, margin gamma",
    beta=2.0,
    needs=Needs(reference_logps=False),
    reads=("gamma",),
)
def simpo_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    logits, reward_w, reward_l = _simpo_parts(batch, s)
    return _result(logistic_loss(logits), reward_w, reward_l)


@register_preference(
    "dpo_reg",
    "T-REG on DPO: DPO + alpha sg(w) (L_REG(y_w) + L_REG(y_l)) with contrastive token rewards",
    beta=0.1,
    alpha=0.25,
    needs=Needs(token_rewarder="contrastive"),
)
def dpo_reg_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    return _treg(_dpo_parts(batch, s), batch, s)


@register_preference(
    "simpo_reg",
    "T-REG on SimPO with SimPO's own sequence weight",
    beta=2.0,
    alpha=0.25,
    needs=Needs(reference_logps=False, token_rewarder="contrastive"),
    reads=("gamma",),
)
def simpo_reg_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    return _treg(_simpo_parts(batch, s), batch, s)


def _tdpo(batch: PairBatch, s: PreferenceSettings, with_alpha: bool) -> PreferenceLoss:
    (pw, pl), (rw, rl), (kw, kl) = _sums(batch), _sums(batch, "reference"), _sequence_kls(batch)
    losses = (
        tdpo2_loss(pw, pl, rw, rl, kw, kl, s.beta, s.alpha)
        if with_alpha
        else tdpo1_loss(pw, pl, rw, rl, kw, kl, s.beta)
    )
    return _result(losses, s.beta * (pw - rw), s.beta * (pl - rl), seqkl_chosen=kw, seqkl_rejected=kl)


@register_preference(
    "tdpo1", "TDPO1: DPO margin minus the sequence-KL difference", beta=0.1, needs=Needs(reference_logits=True)
)
def tdpo1_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    return _tdpo(batch, s, with_alpha=False)


@register_preference(
    "tdpo2",
    "TDPO2: DPO margin minus alpha (SeqKL_l - sg(SeqKL_w))",
    beta=0.1,
    alpha=0.5,
    needs=Needs(reference_logits=True),
)
def tdpo2_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    return _tdpo(batch, s, with_alpha=True)


@register_preference(
    "tgdpo",
    "TGDPO: DPO with per-token weights from a DPO model's implicit token reward",
    beta=0.1,
    alpha=0.5,
    needs=Needs(token_rewarder="implicit"),
)
def tgdpo_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    (pw, pl), (rw, rl) = _sums(batch), _sums(batch, "reference")
    losses = tgdpo_loss(*batch.logps, *batch.reference, *batch.mask, *batch.rewards, s.beta, s.alpha)
    return _result(losses, s.beta * (pw - rw), s.beta * (pl - rl))


@register_preference(
    "sepo",
    "SePO: contrast the top / bottom 30% tokens by implicit token reward",
    beta=1.0,
    needs=Needs(reference_logps=False, token_rewarder="implicit"),
    reads=("sepo_ratio",),
)
def sepo_method(batch: PairBatch, s: PreferenceSettings) -> PreferenceLoss:
    chosen, rejected = sepo_selected_means(*batch.logps, *batch.tokens, *batch.rewards, s.sepo_ratio)
    return _result(logistic_loss(s.beta * (chosen - rejected)), s.beta * chosen, s.beta * rejected)


PREFERENCE_METHODS.alias("treg", "dpo_reg")
