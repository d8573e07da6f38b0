"""The bad-input case table of `tests/test_bad_input.py`: clear / unclear / silent / traceback
counts per command, and every case that is not clear with its message.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bad_input_table.py [--verbose] [--cli-only]

`--cli-only` runs the command-line cases alone (e.g. against an older checkout's `src`, whose
Python API lacks `tokenreward.io`); `--skip ID,ID` leaves cases out (on an older checkout, the
ones that would start a whole demo or world build).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bad_input_cases import CASES, OUTCOMES, fixtures, run_case, tally  # noqa: E402


def main() -> int:
    verbose = "--verbose" in sys.argv
    skip = set(sys.argv[sys.argv.index("--skip") + 1].split(",")) if "--skip" in sys.argv else set()
    cases = [c for c in CASES if (c.argv is not None or "--cli-only" not in sys.argv) and c.id not in skip]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "scratch" / "xdg")
        with fixtures(Path(tmp) / "fx") as fx:
            built = time.perf_counter() - started
            outcomes = [(case, run_case(case, fx)) for case in cases]
    table = tally(outcomes)
    print(f"{'command':<12}" + "".join(f"{o:>11}" for o in OUTCOMES) + f"{'cases':>8}")
    for command, counts in sorted(table.items(), key=lambda kv: (kv[0] == "total", kv[0])):
        print(f"{command:<12}" + "".join(f"{counts[o]:>11}" for o in OUTCOMES) + f"{sum(counts.values()):>8}")
    for case, outcome in outcomes:
        if outcome.verdict != "clear" or verbose:
            changed = f" changed: {', '.join(outcome.changed)}" if outcome.changed else ""
            print(f"[{outcome.verdict}] {case.id} (exit {outcome.code}): {outcome.message.strip()[-400:]}{changed}")
    print(f"fixtures {built:.1f} s, {len(cases)} cases {time.perf_counter() - started - built:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
