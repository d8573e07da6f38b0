"""Run `tokenreward ARGS` recording every file this process writes: `WRITE_PROBE_DIR/rank-R.txt`
gets one line per open-for-write, `os.replace` and `os.rename` target (R = the process's rank).

Used by the two-process tests to check that only the main process writes into a run folder.
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
    from tokenreward.cli import main

    sys.exit(main(sys.argv[1:]))
