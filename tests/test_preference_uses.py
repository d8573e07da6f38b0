"""What each preference method declares it uses is what its loss reads: changing a numeric
setting changes the loss exactly for the methods that declare it; the trainer refuses the others."""

from __future__ import annotations

import pytest
import torch

from tokenreward.losses.preference_methods import METHOD_SPECIFIC_SETTINGS, PREFERENCE_METHODS, PairBatch
from tokenreward.trainers.preference import PreferenceConfig, refuse_unused_settings

NUMERIC = {"alpha": (0.2, 0.7), "gamma": (0.5, 3.0), "sepo_ratio": (0.3, 0.8)}


def random_batch(seed: int = 0, b: int = 3, t: int = 6) -> PairBatch:
    g = torch.Generator().manual_seed(seed)

    def pair(scale=1.0, positive=False):
        a, c = torch.randn(b, t, generator=g) * scale, torch.randn(b, t, generator=g) * scale
        return (a.abs(), c.abs()) if positive else (a - 2.0, c - 2.0)

    mask = (torch.ones(b, t), torch.ones(b, t))
    tokens = (torch.ones(b, t, dtype=torch.bool), torch.ones(b, t, dtype=torch.bool))
    return PairBatch(pair(), mask, tokens, reference=pair(), rewards=pair(), kl=pair(positive=True))


@pytest.mark.parametrize("name", PREFERENCE_METHODS.names())
@pytest.mark.parametrize("setting", sorted(NUMERIC))
def test_a_setting_changes_the_loss_exactly_when_the_method_declares_it(name, setting):
    method, batch = PREFERENCE_METHODS.get(name), random_batch()
    if setting == "alpha" and method.alpha is None:  # a method without alpha cannot even be given one
        assert "alpha" not in method.uses
        with pytest.raises(ValueError, match="has no alpha"):
            method.settings(alpha=NUMERIC["alpha"][0])
        return
    losses = [method.loss(batch, method.settings(**{setting: value})).losses for value in NUMERIC[setting]]
    assert (not torch.allclose(*losses)) == (setting in method.uses)


@pytest.mark.parametrize("name", PREFERENCE_METHODS.names())
def test_the_trainer_refuses_exactly_the_settings_the_method_does_not_use(name):
    given = {
        "alpha": 0.3,
        "gamma": 2.5,
        "sepo_ratio": 0.5,
        "token_rewarder": "red",
        "guide_policy": "g",
        "reward_model": "r",
    }
    for setting in METHOD_SPECIFIC_SETTINGS:
        config = PreferenceConfig(out="unused", **{setting: given[setting]})
        if setting in PREFERENCE_METHODS.get(name).uses:
            refuse_unused_settings(config, name)
        else:
            with pytest.raises(ValueError, match=f"--{setting.replace('_', '-')}: {name} does not use it"):
                refuse_unused_settings(config, name)
