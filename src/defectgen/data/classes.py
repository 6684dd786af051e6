"""The class table: names of defect classes and their ids.

Id 0 is background; defect classes are 1..K in table order. The table is written into every
derived artifact (split files, checkpoints, synthetic datasets) so ids never drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from defectgen.errors import DataError


@dataclass(frozen=True)
class ClassTable:
    names: tuple[str, ...]  # names[k - 1] is class k

    def __post_init__(self):
        if not self.names:
            raise DataError("a dataset needs at least one defect class")
        if len(set(self.names)) != len(self.names):
            raise DataError(f"duplicate class names in {list(self.names)}")

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
