"""The project's error types and the CLI's boundary: only they (and OS errors) are user errors
(exit 2, one line, the library's `NAME=` arguments shown as the command's flags); a built-in
`ValueError` / `KeyError` / `TypeError` from anywhere else is a bug (exit 1, internal error)."""

from __future__ import annotations

import pytest

from tokenreward.cli import main
from tokenreward.errors import InputTypeError, UnknownNameError, UserInputError, flag_spelling


@pytest.mark.parametrize(
    "message, expected",
    [
        ("reward_model=/rm: not found", "--reward-model /rm: not found"),
        ("prompt 0 was given chat_template=True but", "prompt 0 was given --chat-template but"),
        ("policy_tokenizer=tok, policy=p: differ", "--policy-tokenizer tok, --policy p: differ"),
        ("beta_c=0.5 and loading.policy=x and xpolicy=y stay", "beta_c=0.5 and loading.policy=x and xpolicy=y stay"),
        ("policy is named without a value", "policy is named without a value"),
    ],
)
def test_flag_spelling_writes_known_arguments_as_flags(message, expected):
    assert flag_spelling(message, ["reward_model", "chat_template", "policy", "policy_tokenizer"]) == expected


def test_the_error_types_are_the_built_ins_their_callers_catch():
    assert issubclass(UserInputError, ValueError) and issubclass(InputTypeError, TypeError)
    unknown = UnknownNameError("unknown rewarder 'x'; known: red")
    assert isinstance(unknown, KeyError) and str(unknown) == "unknown rewarder 'x'; known: red"


@pytest.mark.parametrize(
    "error, code, line",
    [
        (UserInputError("device=cuda: not here"), 2, "tokenreward score: error: --device cuda: not here"),
        (UnknownNameError("unknown rewarder 'x'"), 2, "tokenreward score: error: unknown rewarder 'x'"),
        (FileNotFoundError(2, "No such file or directory", "/no/file"), 2, "tokenreward score: error: /no/file: "),
        (KeyError("input_ids"), 1, "tokenreward score: internal error: KeyError: input_ids (rerun with --debug"),
        (TypeError("bad operand"), 1, "tokenreward score: internal error: TypeError: bad operand (rerun with"),
        (ValueError("device=cuda"), 1, "tokenreward score: internal error: ValueError: device=cuda (rerun with"),
    ],
)
def test_only_the_projects_errors_are_user_errors(monkeypatch, capsys, error, code, line):
    import tokenreward.commands.score as score

    def broken(args):
        raise error

    real = score.register

    def register(sub):
        real(sub)
        sub.choices["score"].set_defaults(func=broken)

    monkeypatch.setattr(score, "register", register)
    assert main(["score", "--rewarder", "uniform"]) == code
    assert capsys.readouterr().err.splitlines()[-1].startswith(line)
