"""The fenced blocks of README.md and docs/*.md, and the convention that keeps them true.

The fence convention (the first word of a fence's info string is its language):

- ```` ```bash ```` and ```` ```python ```` blocks are run by `tests/test_docs.py` on the small
  world and tiny settings, page by page, in page order, as a reader would run them;
- ```` ```bash illustrative ```` / ```` ```python illustrative ```` blocks are not run: they need
  the full world, a GPU, a verl or OpenRLHF cluster, a network service, or minutes of training.
  A figure such a block produces is quoted from docs/results.md (written by the command's
  `--record docs/results.md`), not typed into the page. Not run is not unchecked: each
  `tokenreward` command of an illustrative bash block must parse with today's flags, and an
  illustrative python block must compile;
- ```` ```output ```` right after a run block is that block's quoted output, checked: each of
  its non-blank lines must appear, in order, among the lines the block printed (`...` in a line
  matches any text). After an illustrative block it is illustrative too;
- in a run Python block, `EXPRESSION  # -> TEXT` is checked: `repr(EXPRESSION)` must match TEXT
  (`...` matches any text);
- ```` ```text ```` (diagrams, file trees, settings fragments) and ```` ```json ```` (message
  bodies) are not commands and are neither run nor counted.

Any other fence, an untagged one included, is an error, so a new command block cannot slip in
unrun and unmarked.

What a run block gets (`tests/test_docs.py`): a fresh folder per page as its working
directory and `HOME`, where `~/.cache/tokenreward/world-full` (the documented default world) is
a copy of the small world, `$W` and `$TOKENREWARD_WORLD` point at it, and `tokenreward` runs
the working tree's command line in-process.

`python tests/docs_snippets.py --count` prints the counts (no tokenreward import needed).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = {"bash": "bash", "sh": "bash", "shell": "bash", "console": "bash", "python": "python"}
OUTPUT = "output"
NOT_CODE = {"text", "json"}
ILLUSTRATIVE = "illustrative"
FENCE = re.compile(r"^(\s*)```(.*)$")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str  # bash, python, output, text, json
    illustrative: bool
    source: str
    output: Block | None = None  # the quoted output that follows a code block

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(path: Path) -> list[Block]:
    """Every fenced block of one page; an unknown or missing language raises ValueError."""
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    k = 0
    while k < len(lines):
        opened = FENCE.match(lines[k])
        if not opened:
            k += 1
            continue
        indent, words = opened.group(1), opened.group(2).split()
        end = next((j for j in range(k + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{page}:{k + 1}: a fence that is never closed")
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[k + 1 : end])
        language = CODE.get(words[0], words[0]) if words else ""
        if language not in {*CODE.values(), OUTPUT, *NOT_CODE}:
            raise ValueError(
                f"{page}:{k + 1}: a fence must name its language (bash, python, output, text, json), "
                f"got {opened.group(2)!r}"
            )
        block = Block(page, k + 1, language, ILLUSTRATIVE in words[1:], body + "\n")
        if language == OUTPUT:
            before = blocks[-1] if blocks else None
            if before is None or before.language not in CODE.values() or before.output is not None:
                raise ValueError(f"{page}:{k + 1}: an output block must follow a bash or python block")
            block.illustrative = before.illustrative
            before.output = block
        blocks.append(block)
        k = end + 1
    return blocks


def code_blocks(path: Path) -> list[Block]:
    return [b for b in parse(path) if b.language in CODE.values()]


def counts() -> dict[str, int]:
    """Code blocks run, those of them whose quoted output (an output block or `# ->` lines) is
    checked, and illustrative ones, over README.md and docs/*.md."""
    run = checked = illustrative = 0
    for path in pages():
        for block in code_blocks(path):
            if block.illustrative:
                illustrative += 1
                continue
            run += 1
            checked += block.output is not None or "# -> " in block.source
    return {"run": run, "checked": checked, "illustrative": illustrative}


def main(argv: list[str]) -> int:
    if argv != ["--count"]:
        print("usage: python tests/docs_snippets.py --count", file=sys.stderr)
        return 2
    found = counts()
    print(
        f"docs: {found['run']} code blocks run by tests/test_docs.py ({found['checked']} with their quoted output "
        f"checked), {found['illustrative']} marked illustrative"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
