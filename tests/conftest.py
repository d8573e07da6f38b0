"""Shared fixtures: tokenizers trained on the spot, tiny random models, the small world.

Nothing is downloaded. The small world is built once per test session (about a minute) into a
temporary directory; tests that need it take the `small_world` fixture.
"""

from __future__ import annotations

import pytest
import torch

from tokenreward.testing import tiny_causal_lm, tiny_reward_model, train_tokenizer

ARCHS = ("gpt2", "llama", "qwen2")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches (reply cache, reference log-probs, token rewards) go to a temporary folder, never
    into the user's ~/.cache; a test that needs another one sets XDG_CACHE_HOME itself."""
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state; a peer library's trainer (TRL's, in the
    comparison tests) leaves its mixed-precision setting there, which would leak into our
    trainers' later `Accelerator()`. Each test starts and ends with a fresh state."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def other_tokenizer():
    """A second tokenizer with a different vocabulary (for mismatch tests)."""
    return train_tokenizer(vocab_size=270)


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param


@pytest.fixture
def reward_model(arch, tokenizer):
    return tiny_reward_model(arch, tokenizer)


@pytest.fixture
def causal_lm(arch, tokenizer):
    return tiny_causal_lm(arch, tokenizer)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """The small world, built once per session (see `tokenreward.worldbuild.build.build_world`)."""
    from tokenreward.worldbuild.build import build_world

    return build_world(tmp_path_factory.mktemp("world") / "small", size="small", seed=0)
