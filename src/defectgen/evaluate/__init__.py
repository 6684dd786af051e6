"""Evaluation: what synthetic data is worth (segmentation arms, metrics, quality)."""

from defectgen.evaluate.arms import BASES, parse_arm, parse_synthetic
from defectgen.evaluate.config import EvalConfig
from defectgen.evaluate.run import RESULT_COLUMNS, evaluate, measure_quality, open_synthetic, result_rows

__all__ = [
    "BASES",
    "RESULT_COLUMNS",
    "EvalConfig",
    "evaluate",
    "measure_quality",
    "open_synthetic",
    "parse_arm",
    "parse_synthetic",
    "result_rows",
]
