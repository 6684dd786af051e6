"""`distributed.run_local`: one function in N spawned processes joined as one process group
(the experiment's evaluate stage runs in it: `tests/test_experiment.py`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from defectgen.distributed import run_local
from defectgen.errors import DataError


def _refuse_on_rank_1() -> None:
    if os.environ["RANK"] == "1":
        raise DataError("rank 1 read a bad file; fix it and run again")


def test_a_user_error_in_one_process_reaches_the_caller_as_it_was():
    with pytest.raises(DataError, match="rank 1 read a bad file; fix it"):
        run_local(_refuse_on_rank_1, (), 2)


def test_every_layouts_dataset_travels_to_a_worker_process(tmp_path):
    """The evaluate stage's processes receive the dataset pickled: every reader must survive it,
    or an experiment would fail after its generators trained."""
    import pickle

    from defectgen.data import open_dataset
    from test_layouts import _coco, _mvtec_category

    for spec in (
        str(_mvtec_category(tmp_path / "mvtec")),
        f"coco:{_coco(tmp_path / 'coco')}",
        str(Path(__file__).parent / "fixtures" / "tiny_folder"),
    ):
        dataset = open_dataset(spec)
        copy = pickle.loads(pickle.dumps(dataset))
        item = next(i for i, it in enumerate(dataset.items) if it.class_ids)
        assert copy.fingerprint() == dataset.fingerprint(), spec
        assert (copy.load_masks(item) == dataset.load_masks(item)).all(), spec
