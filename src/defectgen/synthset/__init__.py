"""The synthetic set: the folder format `synth` and the studio write (`writer`) and
`evaluate` reads (`reader`). Its layout is described in `synthset/writer.py`."""

from defectgen.synthset.reader import (
    MANIFEST,
    PARAMS_FILE,
    is_synthset,
    open_synthetic,
    painted_region,
    read_manifest,
    read_params,
    read_records,
    set_fingerprint,
    set_sources,
)

__all__ = [
    "MANIFEST",
    "PARAMS_FILE",
    "is_synthset",
    "open_synthetic",
    "painted_region",
    "read_manifest",
    "read_params",
    "read_records",
    "set_fingerprint",
    "set_sources",
]
