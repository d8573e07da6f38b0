"""Models that must share a vocabulary are checked before a run trains: the policy, its
reference and any guide model read the same token ids, and the tokenizer fits the policy's
embeddings. A mismatch is a one-line error naming both flags and sizes. `policy_tokenizer`: the
policy's tokenizer, or the world's for a policy saved without one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError


def vocabulary_size(source: Any, flag: str) -> int:
    """The vocabulary of a model (a loaded one, or the `config.json` of its folder / GGUF file)."""
    config = getattr(source, "config", None)
    if config is None:
        from transformers import AutoConfig

        from tokenreward.models import _from_pretrained

        config = _from_pretrained(AutoConfig, str(source), flag.removeprefix("--"))
    size = getattr(config, "vocab_size", None) or getattr(getattr(config, "text_config", None), "vocab_size", None)
    if size is None:
        raise UserInputError(f"{flag} {source}: its config.json states no vocab_size")
    return int(size)


def check_shared_vocabulary(tokenizer, policy: tuple[str, Any], others: dict[str, Any]) -> None:
    """`policy` = (flag, model or folder); `others`: {flag: model or folder} that must read the
    policy's token ids. Checks: the tokenizer's ids fit the policy's embeddings; every other
    model's vocabulary size equals the policy's; a folder holding a tokenizer holds the same
    token -> id table as the run's tokenizer."""
    flag, model = policy
    size = vocabulary_size(model, flag)
    if len(tokenizer) > size:
        raise UserInputError(
            f"the tokenizer has {len(tokenizer)} tokens but the {flag} model's embeddings hold {size}; "
            "use the tokenizer the model was trained with"
        )
    vocab = None
    for other, source in others.items():
        if source is None or source is model:
            continue
        if vocabulary_size(source, other) != size:
            raise UserInputError(
                f"{other} has a vocabulary of {vocabulary_size(source, other)} tokens and {flag} one of {size}; "
                "they must share a tokenizer"
            )
        folder = Path(str(source)) if isinstance(source, (str, Path)) else None
        if folder is not None and folder.is_dir() and (folder / "tokenizer_config.json").is_file():
            from tokenreward.models import load_tokenizer

            vocab = vocab if vocab is not None else tokenizer.get_vocab()
            if load_tokenizer(str(folder)).get_vocab() != vocab:
                raise UserInputError(
                    f"{other} {folder} holds a tokenizer whose token ids differ from the run's ({flag}); "
                    "they must share a tokenizer"
                )


def has_tokenizer(folder: Path | str) -> bool:
    """Whether a model folder (or a GGUF file, whose converted folder always has one) holds a tokenizer."""
    from tokenreward.gguf import resolve_model_source

    return (Path(resolve_model_source(folder)) / "tokenizer_config.json").exists()


def policy_tokenizer(policy_dir: Path, world) -> Any:
    """The tokenizer of the policy folder, else the world's (`world` may be None); it needs a pad
    and an EOS token (responses end with EOS and batches are padded)."""
    from tokenreward.models import load_tokenizer

    if has_tokenizer(policy_dir):
        source = Path(policy_dir)
    elif world is not None:
        source = Path(world.tokenizer_dir)
    else:
        raise FileNotFoundError(f"--policy {policy_dir} holds no tokenizer (tokenizer_config.json)")
    tokenizer = load_tokenizer(str(source))
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise UserInputError(f"the policy tokenizer ({source}) needs a pad and an EOS token")
    return tokenizer
