"""defectgen: labelled synthetic defect images from a small annotated set."""

__version__ = "0.1.0"
