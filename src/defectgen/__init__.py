"""defectgen."""
