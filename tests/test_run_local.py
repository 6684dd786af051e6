"""`distributed.run_local`: one function in N spawned processes joined as one process group
(the experiment's evaluate stage runs in it: `tests/test_experiment.py`)."""

from __future__ import annotations

import os

import pytest

from defectgen.distributed import run_local
from defectgen.errors import DataError


def _refuse_on_rank_1() -> None:
    if os.environ["RANK"] == "1":
        raise DataError("rank 1 read a bad file; fix it and run again")


def test_a_user_error_in_one_process_reaches_the_caller_as_it_was():
    with pytest.raises(DataError, match="rank 1 read a bad file; fix it"):
        run_local(_refuse_on_rank_1, (), 2)
