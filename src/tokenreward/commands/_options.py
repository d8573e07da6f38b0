"""The flags of `tokenreward score` and `tokenreward serve` as dataclasses (`add_config_arguments`
turns each field into its flag): `RewarderOptions`, shared, choose and load the rewarder (with
`ModelLoading`'s flags after them); `ScoreOptions` and `ServeOptions` are each command's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tokenreward.commands._args import at_least


def resource(name: str):
    """A model resource flag: a folder or hub id."""
    return field(default=None, metadata={"help": f"{name.replace('_', ' ')} folder or hub id", "metavar": "DIR"})


def switch(help: str):
    """A flag that takes no value: given, the setting is on."""
    return field(default=False, metadata={"help": help, "action": "store_true"})


@dataclass(kw_only=True)
class RewarderOptions:
    """Which rewarder, its resources and options (see `commands.score.load_rewarder`)."""

    rewarder: str = field(metadata={"help": "rewarder name (red, abc, sparse, uniform, ...)"})
    reward_model: str | None = resource("reward_model")
    tokenizer: str | None = resource("tokenizer")
    policy: str | None = resource("policy")
    reference: str | None = resource("reference")
    discriminator: str | None = resource("discriminator")
    cost_model: str | None = resource("cost_model")
    resource: list[str] = field(
        default_factory=list,
        metadata={"help": "any other resource the rewarder needs", "metavar": "NAME=PATH", "action": "append"},
    )
    option: list[str] = field(
        default_factory=list,
        metadata={"help": "a rewarder option, e.g. beta_c=0.5", "metavar": "NAME=VALUE", "action": "append"},
    )
    world: str | None = field(
        default=None,
        metadata={"help": "take the resources of this built world (flags given override them)", "metavar": "DIR"},
    )
    batch_size: int = field(
        default=8, metadata={"help": "pairs per forward pass, >= 1 (default: 8)", "type": at_least(1)}
    )
    chat_template: bool = switch(
        "apply the tokenizer's chat template to plain-string prompts (each as one user message)"
    )


@dataclass(kw_only=True)
class ScoreOptions:
    """What `tokenreward score` scores and where it writes."""

    prompt: str | None = field(default=None, metadata={"help": "prompt text (with --response)"})
    response: str | None = field(default=None, metadata={"help": "response text (with --prompt)"})
    input: Path | None = field(
        default=None,
        metadata={"help": "JSONL with 'prompt' and 'response' (or 'completion') per line", "metavar": "FILE"},
    )
    format: Literal["text", "json", "html"] = field(
        default="text",
        metadata={
            "help": "text: terminal heatmap; json: one object per response (JSONL for --input); html: a self-contained "
            "page (default: text)"
        },
    )
    output: Path | None = field(
        default=None,
        metadata={
            "help": "write here instead of standard output (replaced only when the run succeeds)",
            "metavar": "FILE",
        },
    )
    on_error: Literal["fail", "skip"] = field(
        default="fail",
        metadata={
            "help": "a bad input row: fail (default: stop naming it, write nothing) or skip (leave it out, say so)"
        },
    )
    truncate: bool = switch("cut prompts longer than the model's context from the left (the response is kept whole)")


@dataclass(kw_only=True)
class ServeOptions:
    """How `tokenreward serve` listens and batches."""

    policy_tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "the policy's tokenizer: decodes `response_ids` and aligns rewards to its tokens",
            "metavar": "DIR",
        },
    )
    host: str = field(
        default="127.0.0.1", metadata={"help": "address to listen on (default: 127.0.0.1, the loopback only)"}
    )
    port: int = field(default=5000, metadata={"help": "port (default: 5000; 0 picks a free one)"})
    max_batch: int = field(default=32, metadata={"help": "most samples scored together across requests (default: 32)"})
    max_wait_ms: float = field(
        default=5.0, metadata={"help": "longest wait for a micro-batch to fill, in ms (default: 5)"}
    )
    empty_reward: float = field(
        default=0.0,
        metadata={
            "help": "sequence reward of a blank /get_reward response (nothing after the prompt), answered unscored "
            "so a rollout batch is never refused for one (default: 0)"
        },
    )
    drain_timeout: float = field(
        default=30.0, metadata={"help": "on SIGTERM, seconds to finish requests in flight (default: 30)"}
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = field(
        default="warning", metadata={"help": "uvicorn's log level (default: warning)"}
    )
