"""Run the `tokenreward` commands of PLAN.json (a list of argument lists) one after the other,
recording every file this process writes: `WRITE_PROBE_DIR/rank-R.txt` gets one line per
open-for-write, `os.replace` and `os.rename` target (R = the process's rank). Stops at the
first command that fails, with its exit status.

Used by the two-process tests (one launch for every trainer) to check that only the main
process writes into a run folder.
"""

from __future__ import annotations

import builtins
import io
import os
import sys

real_open, real_replace, real_rename = builtins.open, os.replace, os.rename
record = os.path.join(os.environ["WRITE_PROBE_DIR"], f"rank-{os.environ.get('RANK', '0')}.txt")


def note(path) -> None:
    with real_open(record, "a") as handle:
        handle.write(os.path.abspath(os.fspath(path)) + "\n")


def probing_open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        note(file)
    return real_open(file, mode, *args, **kwargs)


def probing_replace(src, dst, *args, **kwargs):
    note(dst)
    return real_replace(src, dst, *args, **kwargs)


def probing_rename(src, dst, *args, **kwargs):
    note(dst)
    return real_rename(src, dst, *args, **kwargs)


builtins.open = io.open = probing_open
os.replace, os.rename = probing_replace, probing_rename

if __name__ == "__main__":
    import json

    from accelerate.state import AcceleratorState, GradientState

    from tokenreward.cli import main

    with real_open(sys.argv[1]) as handle:
        plan = json.load(handle)
    for args in plan:
        AcceleratorState._reset_state()  # each command starts from a fresh state, in the same process group
        GradientState._reset_state()
        status = main(args)
        if status:
            sys.exit(status)
