"""The results file (`tokenreward.bench.results_file`): `--record FILE` writes a command's section."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from tokenreward.bench.results_file import (
    SECTION_END,
    SECTIONS_END,
    command_line,
    kind_rows,
    rl_table,
    world_fingerprint,
    write_section,
)
from tokenreward.cli import main

WHEN = datetime(2026, 12, 7, 6, 30, tzinfo=timezone.utc)


@dataclass
class Settings:
    out: Path
    methods: list[str] = field(default_factory=lambda: ["a", "b"])
    steps: int = 100
    strict: bool = False
    world: Path | None = None
    note: str = "x y"
    record: Path | None = None


def fake_world(root: str = "/w/world-full", files: dict | None = None):
    files = files if files is not None else {"data/a.jsonl": {"size": 3, "sha256": "ab"}}
    return SimpleNamespace(root=Path(root), config={"size": "full", "seed": 0, "files": files})


def test_command_line_lists_the_flags_that_differ_from_their_defaults_in_field_order():
    assert command_line("tokenreward bench x", Settings(out=Path("runs/x"))) == "tokenreward bench x --out runs/x"
    changed = Settings(
        out=Path("o"), methods=["b", "c"], steps=200, strict=True, world=Path("w"), note="a b", record=Path("r.md")
    )
    assert command_line("tokenreward bench x", changed) == (
        "tokenreward bench x --out o --methods b,c --steps 200 --strict --world w --note 'a b'"
    )


def test_world_fingerprint_is_the_hash_of_the_recorded_files():
    files = {"b": {"size": 1, "sha256": "00"}, "a": {"size": 2, "sha256": "11"}}
    expected = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    assert world_fingerprint(fake_world(files=files)) == expected
    assert world_fingerprint(fake_world(files={**files, "a": {"size": 2, "sha256": "12"}})) != expected


def test_a_rerun_replaces_its_section_another_command_adds_one_and_other_text_stays(tmp_path):
    path = tmp_path / "results.md"
    intro, history = "# Results\n\nintro text\n\n", "\n## History\n\nold figures\n"
    path.write_text(intro + SECTIONS_END + "\n" + history)
    world = fake_world()
    write_section(path, "tokenreward bench rl --steps 2", world, "| a |\n|---|\n| 1 |", 75, WHEN)
    write_section(path, "tokenreward bench credit", world, "| b |\n|---|\n| 2 |", 5, WHEN)
    write_section(path, "tokenreward bench rl --steps 2", world, "| a |\n|---|\n| 3 |", 5, WHEN)
    text = path.read_text()
    assert text.startswith(intro) and text.endswith(SECTIONS_END + "\n" + history)
    assert text.count("## `tokenreward bench rl --steps 2`") == 1 and "| 1 |" not in text and "| 3 |" in text
    assert text.index("bench rl --steps 2`") < text.index("bench credit`") < text.index(SECTIONS_END)
    assert text.count(SECTION_END) == 2
    rl_section = text[text.index("## `tokenreward bench rl") : text.index("## `tokenreward bench credit")]
    assert (
        "Recorded 2026-12-07 06:30 UTC in 5 s (tokenreward " in rl_section
        and f"on the world `world-full` (size full, seed 0, files {world_fingerprint(world)})" in rl_section
    )


def test_a_section_without_its_end_line_is_refused(tmp_path):
    path = tmp_path / "results.md"
    path.write_text("# R\n\n## `k`\n<!-- recorded: k -->\ntable\n")
    with pytest.raises(ValueError, match="has no end line"):
        write_section(path, "k", fake_world(), "| t |", 1, WHEN)


def test_rl_table_rows_are_the_results_mean_and_std():
    stat = {"mean": -0.5271, "std": 0.0172, "values": [-0.51, -0.54]}
    run = {
        "oracle_score": stat,
        "greedy_oracle_score": {"mean": -0.3, "std": 0.027, "values": [1, 2]},
        "kl": {"mean": 0.83, "std": 0.11, "values": [1, 2]},
        "length": {"mean": 11.1, "std": 0.4, "values": [1, 2]},
        "defect_rate": {"mean": 0.754, "std": 0.004, "values": [1, 2]},
        "train_seconds": {"mean": 55.2, "std": 1.0, "values": [1, 2]},
    }
    results = {
        "seeds": [0, 1],
        "steps": 200,
        "split": "test",
        "baseline": "ppo-sparse",
        "sft": run,
        "methods": {"ppo-sparse": run, "ppo-red": {**run, "steps_to_target": None}},
    }
    rows = rl_table(results).splitlines()
    assert rows[0] == "2 seed(s), 200 steps, test split, mean ± std over seeds"
    assert rows[-2].startswith("| ppo-sparse | -0.527 ± 0.017 | -0.300 ± 0.027 | 0.830 ± 0.110 | 11.1 ± 0.4 |")
    assert rows[-2].endswith("| baseline | 55 ± 1 |") and rows[-1].endswith("| - | 55 ± 1 |")
    reading = {"mean": -0.61, "std": 0.0187, "values": [-0.6, -0.62], "reached": 2, "of": 3}
    results["matched_kl"] = {"kl": 0.50345, "baseline": "ppo-sparse", "methods": {"ppo-red": reading}}
    rows = rl_table(results).splitlines()
    assert rows[0].startswith("At matched KL: ") and "reaches 0.503 (ppo-sparse's final KL" in rows[0]
    assert rows[2:5] == [
        "| method | score at KL 0.503 | seeds reaching |",
        "|---|---|---|",
        "| ppo-red | -0.610 ± 0.019 | 2/3 |",
    ]
    assert rows[6] == "2 seed(s), 200 steps, test split, mean ± std over seeds"
    assert rows[8].startswith("| method | oracle score (sampled) | oracle score (greedy) |")
    rows = rl_table({**results, "reward": "verifiable"}).splitlines()
    assert "the sampled held-out accuracy (verifiable oracle) where" in rows[0]
    assert rows[8].startswith(
        "| method | accuracy (verifiable oracle) (sampled) | accuracy (verifiable oracle) (greedy) |"
    )


def test_credit_kind_rows_are_each_rewarders_auroc_per_kind_with_the_most_responses():
    results = {
        "red": {
            "auroc_within_by_kind": {
                "repeat": {"auroc": 0.61234, "responses": 7},
                "hostile": {"auroc": 0.9, "responses": 3},
            }
        },
        "uniform": {"auroc_within_by_kind": {"repeat": {"auroc": 0.5, "responses": 9}}},
        "random": {"auroc_within_by_kind": {}},
    }
    rows = kind_rows(results)
    assert rows[3] == "| rewarder | hostile (n=3) | repeat (n=9) |"
    assert rows[5:] == ["| red | 0.900 | 0.612 |", "| uniform | - | 0.500 |"]
    assert kind_rows({"random": {}}) == []


def test_bench_credit_records_its_table_and_an_unwritable_record_stops_before_any_work(small_world, tmp_path, capsys):
    path = tmp_path / "docs" / "results.md"
    argv = ["bench", "credit", "--world", str(small_world.root), "--rewarders", "red", "--limit", "6"]
    assert main([*argv, "--json", str(tmp_path / "credit.json"), "--record", str(path)]) == 0
    results = json.loads((tmp_path / "credit.json").read_text())
    text = path.read_text()
    key = f"tokenreward bench credit --world {small_world.root} --rewarders red --json {tmp_path / 'credit.json'} --limit 6"
    assert f"## `{key}`" in text and f"files {world_fingerprint(small_world)}" in text
    for name, m in results.items():
        row = re.search(rf"^\| {name} \| (.*) \|$", text, re.M).group(1).split(" | ")
        assert [float(v) for v in row[:4]] == [
            pytest.approx(m[k], abs=5e-4) for k in ("auroc", "spearman", "top1", "auroc_within")
        ]
    assert set(results) == {"red", "uniform", "random"}
    capsys.readouterr()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*argv, "--record", str(blocker / "results.md")]) == 2
    err = capsys.readouterr()
    assert "--record" in err.err and "bench credit" not in err.out  # no table: nothing was scored


def test_the_projects_results_file_is_well_formed_and_every_cited_section_exists():
    """docs/results.md: each recorded section has its heading, its marker and its end line, and
    every `tokenreward ...` command line a page cites as a section of results.md is one."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "results.md").read_text()
    keys = re.findall(r"^<!-- recorded: (.+) -->$", text, re.M)
    assert keys and len(keys) == len(set(keys)) and text.count(SECTION_END) == len(keys)
    bounds = [text.index(f"## `{key}`\n<!-- recorded: {key} -->") for key in keys] + [text.index(SECTIONS_END)]
    assert bounds == sorted(bounds)
    assert all(text[begin:end].count(SECTION_END) == 1 for begin, end in zip(bounds, bounds[1:]))
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        for cited in re.findall(r"section `(tokenreward [^`]+)`", page.read_text().replace("\n", " ")):
            assert " ".join(cited.split()) in keys, f"{page.name} cites a section {cited!r} that results.md lacks"
