"""The import graph keeps the layers docs/ARCHITECTURE.md states: no cycle, no module importing
one of a higher layer (function-local imports included), and the document names only modules
that exist."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "defectgen"

# Lowest first. A module belongs to the first layer with a prefix it matches; a module may
# import its own layer and those below.
LAYERS = [
    ("foundation", ["defectgen", "errors", "ui", "fileio", "tensors", "settings", "viz", "distributed",
                    "geometry", "severity", "launch"]),
    ("data", ["data"]),
    ("models", ["models"]),
    ("configs", ["gan.config", "gan.checkpoint", "synth_config", "studio_config"]),
    ("masks", ["masks", "paste"]),
    ("engines", ["gan", "painter", "synthset", "evaluate"]),
    ("verbs", ["synth", "experiment", "report", "export", "studio", "demo"]),
    ("cli", ["cli", "cli_config", "__main__"]),
]  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The defectgen modules `name` imports anywhere in its file (an imported package's
    submodule when `from package import submodule`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.add(full if full in known else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != name}


def layer_of(name: str) -> int:
    short = name.removeprefix("defectgen.") if name != "defectgen" else "defectgen"
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if short == prefix or short.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS and to docs/ARCHITECTURE.md")
    return best[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_no_import_cycle(graph):
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_no_import_cycle_between_packages(graph):
    """Folded to top-level modules and packages (gan, evaluate, synth, ...), still no cycle."""

    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for name, targets in graph.items():
        for target in targets:
            if top(name) != top(target) and "defectgen" not in (top(name), top(target)):
                folded.setdefault(top(name), set()).add(top(target))
    try:
        tuple(graphlib.TopologicalSorter(folded).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle between packages: {' -> '.join(err.args[1])}")


def test_nothing_imports_a_higher_layer(graph):
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_layer_rule_catches_an_upward_import():
    """The rule itself, on a planted graph: a data module importing the evaluation is caught."""
    planted = {"defectgen.data.split": {"defectgen.evaluate.run"}}
    assert any(layer_of(t) > layer_of(n) for n, ts in planted.items() for t in ts)
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


def test_architecture_names_only_modules_that_exist():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("```")[1]  # the module map
    assert len(re.findall(r"\.py\b", block)) > 30
    stack: list[str] = []
    for line in block.splitlines():
        match = re.match(r"^(\s*)([\w/]+\.py|[\w/]+/)(\s|$)", line)
        if not match:
            continue
        stack = stack[: len(match.group(1)) // 2]  # the map indents two spaces per folder level
        entry = match.group(2)
        path = ROOT.joinpath(*stack, entry)
        assert path.exists(), f"docs/ARCHITECTURE.md names {'/'.join([*stack, entry])}, which does not exist"
        if entry.endswith("/"):
            stack.append(entry.rstrip("/"))
    layers_text = text.split("## Layers")[1].split("##")[0]
    for name, _ in LAYERS:
        assert f"**{name}**" in layers_text, f"layer {name} is not described in docs/ARCHITECTURE.md"


def test_no_source_file_is_ignored_by_git():
    """A clean clone (CI) has only what git tracks: an ignore rule that swallows a package
    (a `synth/` meant for output folders once hid `src/defectgen/synth/`) breaks every import."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p.relative_to(ROOT)) for folder in ("src", "tests", "benchmarks", "docs")
             for p in (ROOT / folder).rglob("*") if p.is_file() and not any(
                 part == "__pycache__" or part.endswith(".egg-info") for part in p.parts)]  # fmt: skip
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(files),
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    allowed = {f for f in ignored if f.endswith(".pt") and not f.startswith("tests/fixtures/")}
    assert sorted(set(ignored) - allowed) == [], "git ignores these source files; fix .gitignore"
