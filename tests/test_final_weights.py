"""`RunFolder.finish` never writes `final/` (nor `done`, which follows it) over trained weights holding inf or NaN."""

from __future__ import annotations

import pytest
import torch

from tokenreward.testing import tiny_causal_lm, train_tokenizer
from tokenreward.trainers.run_folder import RunFolder


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_trained_weights_are_refused_and_nothing_is_written(tokenizer, tmp_path, bad):
    model = tiny_causal_lm("gpt2", tokenizer)
    name, parameter = list(model.named_parameters())[3]
    with torch.no_grad():
        parameter.view(-1)[0] = bad
    folder = RunFolder(tmp_path / "run", {}, resume=False, main=True)
    with pytest.raises(FloatingPointError) as err:
        folder.finish(model, tokenizer)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "run") in message and name in message
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []


def test_frozen_weights_are_not_the_run_s_concern_and_finite_ones_are_saved(tokenizer, tmp_path):
    model = tiny_causal_lm("gpt2", tokenizer)
    finite = RunFolder(tmp_path / "finite", {}, resume=False, main=True)
    assert (finite.finish(model, tokenizer) / "config.json").is_file()
    assert (tmp_path / "finite" / "done").is_file()
    frozen = next(p for p in model.parameters())
    frozen.requires_grad_(False)
    with torch.no_grad():
        frozen.view(-1)[0] = float("inf")
    folder = RunFolder(tmp_path / "frozen", {}, resume=False, main=True)
    assert folder.finish(model, tokenizer).is_dir()
