"""The class table: names of defect classes and their ids.

Id 0 is background; defect classes are 1..K in table order. The table is written into every
derived artifact (split files, checkpoints, synthetic datasets) so ids never drift.

A class name is any non-empty text without control characters (newline, CR, tab, NUL, ...),
line or paragraph separators or a byte-order mark, and without leading or trailing whitespace:
exactly what one line of `classes.txt` can carry. Spaces inside a name, '#', and any other
Unicode are kept as they are. `classes.txt` is UTF-8, line k = class k; `to_classes_txt` and
`from_classes_txt` are its one writer and reader.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from defectgen.errors import DataError
from defectgen.fileio import read_text

# Unicode categories no name may hold: each would split a classes.txt line or fail to encode.
_FORBIDDEN = {
    "Cc": "a control character",  # newline, CR, tab, NUL, DEL, NEL, ...
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "bytes that are not valid text",  # lone surrogates: a folder name that was not UTF-8
}


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name, or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return "is empty or only whitespace"
    if name != name.strip():
        return "starts or ends with whitespace"
    for char in name:
        category = unicodedata.category(char)
        if category in _FORBIDDEN:
            return f"contains {_FORBIDDEN[category]} ({char!r})"
        if char == "\ufeff":
            return "contains a byte-order mark (U+FEFF)"
    return None


@dataclass(frozen=True)
class ClassTable:
    names: tuple[str, ...]  # names[k - 1] is class k

    def __post_init__(self):
        if not self.names:
            raise DataError("a dataset needs at least one defect class")
        if len(set(self.names)) != len(self.names):
            raise DataError(f"duplicate class names in {list(self.names)}")
        for name in self.names:
            problem = class_name_problem(name)
            if problem:
                raise DataError(f"class name {name!r} {problem}; rename the class")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.names) + 1))

    def name(self, class_id: int) -> str:
        self.check_id(class_id)
        return self.names[class_id - 1]

    def check_id(self, class_id: int) -> None:
        if not 1 <= class_id <= len(self.names):
            raise DataError(
                f"class id {class_id} is not in the class table (valid: 1..{len(self.names)}: "
                f"{', '.join(self.names)})"
            )

    def to_json(self) -> list[dict]:
        return [{"id": i, "name": n} for i, n in zip(self.ids, self.names, strict=True)]

    @classmethod
    def from_json(cls, rows: list[dict]) -> ClassTable:
        rows = sorted(rows, key=lambda r: int(r["id"]))
        if [int(r["id"]) for r in rows] != list(range(1, len(rows) + 1)):
            raise DataError(f"class table ids must be 1..K without gaps, got {rows}")
        return cls(tuple(str(r["name"]) for r in rows))

    def to_classes_txt(self) -> bytes:
        """`classes.txt` content: UTF-8, one name a line (line k = class k), '\\n' endings."""
        return "".join(f"{name}\n" for name in self.names).encode("utf-8")

    @classmethod
    def from_classes_txt(cls, path: Path) -> ClassTable:
        """Read `classes.txt`: UTF-8 with or without a byte-order mark, LF or CRLF endings; each
        line is stripped of surrounding whitespace and blank lines at the end are ignored. A
        blank line before the last name, a bad name or a non-UTF-8 file is a DataError naming
        the file (and line)."""
        try:
            text = read_text(path, "class-name file")
        except OSError as err:
            raise DataError(f"{path}: cannot read the class names ({err.strerror or err})") from err
        lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        for number, name in enumerate(lines, start=1):
            problem = class_name_problem(name)
            if problem:
                if not name:
                    raise DataError(f"{path} line {number}: blank, but line k names class k; remove it")
                raise DataError(f"{path} line {number}: class name {name!r} {problem}; rename it")
        try:
            return cls(tuple(lines))
        except DataError as err:
            raise DataError(f"{path}: {err}") from None
