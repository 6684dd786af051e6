"""Evaluation: what synthetic data is worth (segmentation arms, metrics, quality)."""

from defectgen.evaluate.run import RESULT_COLUMNS, EvalConfig, evaluate, open_synthetic, result_rows

__all__ = ["RESULT_COLUMNS", "EvalConfig", "evaluate", "open_synthetic", "result_rows"]
