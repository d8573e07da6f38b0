"""The documentation's code blocks, run: every bash and python block of README.md and docs/*.md
is run here on the small world, or marked illustrative (the convention: `tests/docs_snippets.py`).

Each page runs in a fresh folder, which is the blocks' working directory and `HOME`, blocks in
page order as a reader would run them; `~/.cache/tokenreward/world-full` there (the documented
default world) is a copy of the small world, and `$W` names it. A bash block runs in `bash -e -o
pipefail`, where `tokenreward` is a shell function that hands its arguments, working directory and
environment to this process, which runs `tokenreward.cli.main` in-process (a new interpreter per
command would cost seconds each); python blocks of a page share one namespace.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import threading
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from docs_snippets import ROOT, Block, code_blocks, counts, pages, parse

SHELL_FUNCTION = r"""
tokenreward() {
  { printf '%s\0' "$PWD" "$#" "$@"; env -0; } > "$TOKENREWARD_DOCS_REQUEST"
  local status
  read -r status < "$TOKENREWARD_DOCS_STATUS"
  cat "$TOKENREWARD_DOCS_OUTPUT"
  return "$status"
}
"""
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def wildcard(text: str) -> re.Pattern:
    """`text` with `...` matching any run of characters."""
    return re.compile(".*?".join(re.escape(part) for part in text.split("...")), re.DOTALL)


def first_line_missing(expected: str, printed: str) -> str | None:
    """The first non-blank line of `expected` not found, in order, among the lines of `printed`."""
    lines = [ANSI.sub("", line).rstrip() for line in printed.splitlines()]
    k = 0
    for want in (line.strip() for line in expected.splitlines() if line.strip()):
        pattern = wildcard(want)
        while k < len(lines) and not pattern.search(lines[k]):
            k += 1
        if k == len(lines):
            return want
        k += 1
    return None


def check_repr(value, expected: str, where: str) -> None:
    """A python block's `EXPRESSION  # -> TEXT` line."""
    got = repr(value)
    assert wildcard(expected).fullmatch(got), f"{where}: the page says {expected}, the code gives {got}"


def with_checks(source: str, where: str) -> str:
    """`EXPRESSION  # -> TEXT` lines (no indentation) rewritten into `check_repr` calls."""
    import ast

    lines = []
    for number, line in enumerate(source.splitlines(), start=1):
        found = re.match(r"^(\S.*?)\s+# -> (.+)$", line)
        if found:
            try:
                ast.parse(found.group(1), mode="eval")
            except SyntaxError:
                found = None
        if found:
            line = f"__check__({found.group(1)}, {found.group(2).strip()!r}, {f'{where} (line {number})'!r})"
        lines.append(line)
    return "\n".join(lines) + "\n"


def fresh_accelerate_state() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


class InProcess:
    """Runs a callable with a page's working directory and environment, capturing its output."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def __call__(self, fn, cwd: str, env: dict[str, str]) -> tuple[int, str]:
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        printed = io.StringIO()
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        fresh_accelerate_state()
        try:
            with redirect_stdout(printed), redirect_stderr(printed):
                status = fn()
        except SystemExit as done:
            status = done.code if isinstance(done.code, int) else 1
        except BaseException:
            printed.write(traceback.format_exc())
            status = 1
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
        return int(status or 0), printed.getvalue()


class CliServer:
    """The other end of the `tokenreward` shell function: reads a request from one FIFO, runs
    `tokenreward.cli.main` in-process, writes its output to a file and its status to a FIFO."""

    def __init__(self, folder: Path, run: InProcess):
        self.request, self.status, self.output = folder / "request", folder / "status", folder / "output"
        for fifo in (self.request, self.status):
            os.mkfifo(fifo)
        self.run = run
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        from tokenreward.cli import main

        while True:
            with open(self.request, "rb") as handle:
                data = handle.read()
            if not data:
                return
            words = [w.decode() for w in data.split(b"\0")[:-1]]
            cwd, count = words[0], int(words[1])
            argv, env = words[2 : 2 + count], dict(w.split("=", 1) for w in words[2 + count :] if "=" in w)
            status, printed = self.run(lambda: main(argv), cwd, env)
            self.output.write_text(printed)
            with open(self.status, "w") as handle:
                handle.write(f"{status}\n")

    def stop(self) -> None:
        with open(self.request, "wb"):
            pass
        self.thread.join(timeout=10)


@pytest.fixture
def page_folder(tmp_path, small_world):
    """A reader's folder: HOME, the working directory, and the small world as the default world."""
    world = tmp_path / ".cache" / "tokenreward" / "world-full"
    shutil.copytree(small_world.root, world, ignore=shutil.ignore_patterns(".tokenreward.lock"))
    env = {
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / ".cache"),
        "W": str(world),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "src"),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "120",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "TOKENREWARD_DOCS_REQUEST": str(tmp_path / "request"),
        "TOKENREWARD_DOCS_STATUS": str(tmp_path / "status"),
        "TOKENREWARD_DOCS_OUTPUT": str(tmp_path / "output"),
    }
    return tmp_path, env


def run_bash(block: Block, folder: Path, env: dict[str, str], server: CliServer) -> tuple[int, str]:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", SHELL_FUNCTION + block.source],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout


def run_python(block: Block, folder: Path, env: dict[str, str], namespace: dict, run: InProcess) -> tuple[int, str]:
    code = compile(with_checks(block.source, block.where), block.where, "exec")
    namespace["__check__"] = check_repr
    return run(lambda: exec(code, namespace), str(folder), env)


RUN_PAGES = [p for p in pages() if any(not b.illustrative for b in code_blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(ROOT)) for p in RUN_PAGES])
def test_page_blocks_run_and_print_what_the_page_quotes(page, page_folder):
    folder, env = page_folder
    run = InProcess(env)
    server = CliServer(folder, run)
    namespace: dict = {"__name__": "__docs__"}
    try:
        for block in code_blocks(page):
            if block.illustrative:
                continue
            if block.language == "bash":
                status, printed = run_bash(block, folder, env, server)
            else:
                status, printed = run_python(block, folder, env, namespace, run)
            assert status == 0, f"{block.where}: the block failed (exit {status}):\n{printed[-3000:]}"
            if block.output is not None:
                missing = first_line_missing(block.output.source, printed)
                assert missing is None, (
                    f"{block.output.where}: the page quotes {missing!r}; the block printed:\n{printed}"
                )
    finally:
        server.stop()


def test_every_code_block_is_run_or_marked_illustrative():
    """Every page parses (an untagged or unknown fence is refused), each code block is either run
    by the test above or marked illustrative, and the counts are printed (`-rA`)."""
    blocks = [b for page in pages() for b in code_blocks(page)]
    found = counts()
    run = [b for b in blocks if not b.illustrative]
    assert found["run"] == len(run) > 0 and found["run"] + found["illustrative"] == len(blocks)
    assert {Path(ROOT / b.page) for b in run} == set(RUN_PAGES)
    print(
        f"docs: {found['run']} code blocks run ({found['checked']} with quoted output checked), "
        f"{found['illustrative']} illustrative"
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("```\nls\n```\n", "must name its language"),
        ("```ruby\nputs 1\n```\n", "must name its language"),
        ("text\n```output\n1\n```\n", "must follow a bash or python block"),
        ("```bash\nls\n", "never closed"),
    ],
)
def test_an_unmarked_fence_or_a_stray_output_is_refused(tmp_path, text, problem):
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(ValueError, match=problem):
        parse(page)


def test_illustrative_marks_and_quoted_outputs_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash illustrative\nx\n```\n```output\ny\n```\n```python\n1  # -> 1\n```\n```text\nz\n```\n")
    first, second = code_blocks(page)
    assert (first.illustrative, first.output.source, first.output.illustrative) == (True, "y\n", True)
    assert (second.language, second.illustrative, second.output, second.line) == ("python", False, None, 7)


def test_output_check_and_repr_check_catch_a_difference():
    """The checker itself: quoted lines in order, `...` wildcards, and a wrong figure caught."""
    printed = "loading\n| red | 0.535 | 0.013 |\ndone in 3 s\n"
    assert first_line_missing("| red | 0.535 | ... |\ndone in ... s", printed) is None
    assert first_line_missing("done in ... s\n| red |", printed) == "| red |"  # order matters
    assert first_line_missing("| red | 0.536 |", printed) == "| red | 0.536 |"
    check_repr({"a": 1.5}, "{'a': 1.5}", "x")
    with pytest.raises(AssertionError, match="the page says"):
        check_repr(-1.0, "-0.5", "x")
    rewritten = with_checks("x = 2\nx + 1  # -> 3\nprint(x)  # a comment\n", "page.md:1")
    assert rewritten.splitlines()[1] == "__check__(x + 1, '3', 'page.md:1 (line 2)')"


def command_lines(source: str) -> list[list[str]]:
    """The `tokenreward` invocations of a bash block, as argument lists: continuation lines
    joined, comments dropped, split at `&&`, `;`, `|` and `&`; leading `NAME=VALUE` settings,
    `accelerate launch ... -m tokenreward.cli` and `python -m tokenreward.cli` read as `tokenreward`.
    Lines that take their arguments from a variable (`$ARGS`) or use `...` as a placeholder are left out."""
    import shlex

    joined = re.sub(r"\\\n", " ", source).replace("$'", "'")
    found = []
    for line in joined.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        segment: list[str] = []
        for word in [*words, ";"]:
            if word not in ("&&", ";", "|", "&", "||"):
                segment.append(word)
                continue
            if "tokenreward.cli" in segment:
                segment = ["tokenreward", *segment[segment.index("tokenreward.cli") + 1 :]]
            while segment and re.match(r"^[A-Za-z_]+=", segment[0]):
                segment = segment[1:]
            if segment[:1] == ["tokenreward"] and not any("$ARGS" in w or w == "..." for w in segment):
                found.append(segment[1:])
            segment = []
    return found


def test_illustrative_blocks_still_parse():
    """What is not run is still checked: every `tokenreward` command of an illustrative bash block
    parses with today's flags (a renamed or missing required flag fails here), and every
    illustrative python block compiles."""
    from tokenreward.cli import build_parser

    parser = build_parser()
    checked, refused = 0, []
    for page in pages():
        for block in code_blocks(page):
            if not block.illustrative:
                continue
            if block.language == "python":
                compile(block.source, block.where, "exec")
                continue
            for argv in command_lines(block.source):
                printed = io.StringIO()
                with redirect_stdout(printed), redirect_stderr(printed):
                    try:
                        parser.parse_args(argv)
                    except SystemExit as done:
                        if done.code:
                            error = printed.getvalue().strip().splitlines()[-1]
                            refused.append(f"{block.where}: `tokenreward {' '.join(argv)}`: {error}")
                checked += 1
    assert not refused, "\n".join(refused)
    assert checked > 20
    print(f"docs: {checked} tokenreward commands of illustrative blocks parse")


def test_command_lines_are_read_as_a_shell_would_split_them():
    source = (
        "W=x tokenreward score --prompt $'a\\nb' --response ' c'  # heatmap\n"
        "tokenreward label --output l.jsonl && tokenreward train discriminator \\\n    --labels l.jsonl &\n"
        "accelerate launch --num_processes 2 -m tokenreward.cli train ppo --out two\n"
        "python -m tokenreward.cli $ARGS --out one\ncurl -s localhost | tokenreward serve ... --port 5000\n"
    )
    assert command_lines(source) == [
        ["score", "--prompt", "a\\nb", "--response", " c"],
        ["label", "--output", "l.jsonl"],
        ["train", "discriminator", "--labels", "l.jsonl"],
        ["train", "ppo", "--out", "two"],
    ]
