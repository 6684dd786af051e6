"""Evaluation: what synthetic data is worth (segmentation arms, metrics, quality)."""

from defectgen.evaluate.run import EvalConfig, evaluate, open_synthetic

__all__ = ["EvalConfig", "evaluate", "open_synthetic"]
