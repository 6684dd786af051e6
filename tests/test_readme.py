"""The README cannot rot: every command it shows names a real verb with real options, and its
Python example runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defectgen.cli import app

README = Path(__file__).parents[1] / "README.md"
USAGE = Path(__file__).parents[1] / "docs" / "USAGE.md"


def _blocks(language: str, *pages: Path) -> list[str]:
    text = "".join(page.read_text() for page in pages or (README,))
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash", README, USAGE):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if "defectgen " in line:
                words = shlex.split(line)
                commands.append(words[words.index("defectgen") + 1 :])
    return commands


def test_readme_reads_in_ten_minutes():
    """Option detail lives in docs/USAGE.md, history in benchmarks/RESULTS.md."""
    assert len(README.read_text().splitlines()) <= 200


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w[:2]))
def test_every_readme_command_uses_real_options(words):
    verb = words[0]
    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, f"README uses unknown verb {verb!r}"
    for option in (w.split("=")[0] for w in words[1:] if w.startswith("--")):
        assert option in result.output, f"README: `defectgen {verb}` has no option {option}"


def test_readme_python_example_runs(magnetic_tile_dir, capsys):
    (code,) = _blocks("python")
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    assert "Blowhole" in capsys.readouterr().out
