"""Reading results.json: the schema the evaluation writes (`evaluate/schema.py`), checked before
anything is drawn."""

from __future__ import annotations

from pathlib import Path

from defectgen.errors import DataError
from defectgen.evaluate.schema import FORMAT, OPTIONAL_OBJECTS, REQUIRED_KEYS, RESULTS_FILE
from defectgen.fileio import parse_json


def load_results(eval_dir: Path) -> dict:
    """`eval_dir/results.json` -> dict, checked for the keys the report cannot do without."""
    path = Path(eval_dir) / RESULTS_FILE
    rerun = "run `defectgen evaluate` to (re)create it, then `defectgen report` on that folder"
    if not path.is_file():
        where = "" if Path(eval_dir).is_dir() else f" (the folder {eval_dir} does not exist either)"
        raise DataError(f"{path} not found{where}: {rerun}")
    try:
        results = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{path} is not readable JSON ({err}): {rerun}") from err
    if not isinstance(results, dict):
        raise DataError(f"{path} holds {type(results).__name__}, not an object: {rerun}")
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise DataError(f"{path} lacks the key(s) {', '.join(missing)}: {rerun}")
    if results["format"] != FORMAT:
        raise DataError(
            f"{path} has format {results['format']!r}; this defectgen reads {FORMAT!r}: {rerun} "
            "with this version"
        )
    _check_shapes(results, path, rerun)
    return results


def _check_shapes(results: dict, path: Path, rerun: str) -> None:
    """The few structural facts every section relies on; the rest is read defensively."""
    problems = []
    classes = results["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, dict) and "name" in c for c in classes):
        problems.append('"classes" must be a list of {"id", "name"} objects')
    if not isinstance(results["config"], dict):
        problems.append('"config" must be an object')
    if not isinstance(results["runs"], list) or not all(isinstance(run, dict) for run in results["runs"]):
        problems.append('"runs" must be a list of objects')
    if not isinstance(results["summary"], dict):
        problems.append('"summary" must be an object with one entry per arm')
    for key in OPTIONAL_OBJECTS:
        if results.get(key) is not None and not isinstance(results[key], dict):
            problems.append(f'"{key}" must be an object or null')
    if problems:
        raise DataError(f"{path} is malformed: {'; '.join(problems)}: {rerun}")
