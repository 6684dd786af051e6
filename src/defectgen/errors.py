"""User-facing errors.

Every error a user can cause (bad data, bad options, bad files) is a `DefectgenError`. Its
message names the file / row / item at fault and says what to do; the CLI prints it on one
line and exits with code 2, without a traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class DefectgenError(Exception):
    """An error the user can fix; `str(err)` is the whole message."""


class DataError(DefectgenError):
    """A dataset file or item is missing, unreadable or malformed."""


class RLEError(DataError):
    """A run-length string is malformed. `where` names the file and row when known."""

    def __init__(self, reason: str, where: str = ""):
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)

    def at(self, where: str) -> RLEError:
        """The same error, located (e.g. 'train.csv row 17 (ImageId 0002cc93b.jpg, class 1)')."""
        return RLEError(self.reason, where)


class ConfigError(DefectgenError):
    """An option or configuration value is invalid."""
