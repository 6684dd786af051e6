"""Where this process stands in a torchrun launch, read from the environment torchrun sets
(without importing torch, so the CLI can ask cheaply)."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in the launch (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine (its GPU index)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process speaks for the launch (rank 0)."""
    return rank() == 0
