"""The project's error types for failures the user can fix: the command line prints them as one
line `tokenreward COMMAND: error: ...` with exit status 2 (anything else is a bug, shown with its
traceback).

- `UserInputError(ValueError)`: a value, a file's content or a resource that cannot be used; the
  message names what to fix (the argument, file, row or field). Library code names its own
  arguments as `NAME=VALUE` (`policy=/runs/sft: ...`); `flag_spelling` turns those into the
  command line's flags (`--policy /runs/sft: ...`) for the names the CLI has as flags.
- `UnknownNameError(UserInputError, KeyError)`: a name no registry knows.
- `InputTypeError(UserInputError, TypeError)`: a value of the wrong type (a prompt that is
  neither text nor messages).
- `NonFiniteError(FloatingPointError)`: a loss, score or reward that came out NaN or infinite.

Each subclasses the built-in error its callers used to catch (`except ValueError` keeps working).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable


class UserInputError(ValueError):
    """Bad user input, described in one line naming what to fix."""


class UnknownNameError(UserInputError, KeyError):
    """A name no registry knows (a `KeyError` too; shown without the quotes `KeyError` adds)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputTypeError(UserInputError, TypeError):
    """A value of a type the argument does not take."""


class NonFiniteError(FloatingPointError):
    """A loss, score or reward that is NaN or infinite (the message names the step or row)."""


REPORTED = (UserInputError, NonFiniteError)


def as_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_spelling(message: str, names: Iterable[str], spell: Callable[[str], str] = as_flag) -> str:
    """`message` with each argument `NAME=VALUE` of `names` (at a word start) written as
    `spell(NAME) VALUE`, by default its flag (`reward_model=/rm: not found` -> `--reward-model
    /rm: not found`); a switch `NAME=True` becomes the flag alone (`--chat-template`)."""
    wanted = sorted(set(names), key=len, reverse=True)
    if not wanted:
        return message
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, wanted)) + r")=(True\b)?")
    return pattern.sub(lambda m: spell(m[1]) + ("" if m[2] else " "), message)
