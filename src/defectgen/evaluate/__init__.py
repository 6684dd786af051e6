"""Evaluation: what synthetic data is worth (segmentation arms, metrics, quality).

The arm grammar and the config load at once; the evaluation itself (torch, the segmenter,
torchmetrics) loads on first use, so `defectgen --help` and the CLI's option defaults do not
wait for it.
"""

from importlib import import_module

from defectgen.evaluate.arms import BASES, parse_arm, parse_synthetic
from defectgen.evaluate.config import EvalConfig

_FROM_RUN = ("RESULT_COLUMNS", "evaluate", "result_rows")
_FROM_QUALITY = ("measure_quality",)

__all__ = ["BASES", "EvalConfig", "parse_arm", "parse_synthetic", *_FROM_RUN, *_FROM_QUALITY]


def __getattr__(name: str):
    if name in _FROM_RUN:
        return getattr(import_module("defectgen.evaluate.run"), name)
    if name in _FROM_QUALITY:
        return getattr(import_module("defectgen.evaluate.set_quality"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
