"""Digests of every file synthesis, the studio and the ONNX export write on the tiny test fixture,
for refactoring: run it before and after a change that should not change any output, and diff.

    .venv/bin/python benchmarks/output_digests.py > before.json   # on the old commit
    .venv/bin/python benchmarks/output_digests.py > after.json    # on the new one
    diff before.json after.json

Everything it writes is a function of the seeds on one machine, except the ONNX file's bytes
(the exporter's own; its digest changes from run to run). Checkpoint bytes hold the training
config, so a change of the config's fields changes them (and synth.json's checkpoint digest)
while every painted pixel stays the same.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import FIXTURE, TINY  # noqa: E402
from defectgen.data import open_dataset  # noqa: E402
from defectgen.data.split import make_split  # noqa: E402
from defectgen.export import export_onnx  # noqa: E402
from defectgen.gan.config import TrainConfig  # noqa: E402
from defectgen.gan.train import train  # noqa: E402
from defectgen.studio.session import StudioSession  # noqa: E402
from defectgen.synth import synthesize  # noqa: E402
from defectgen.synth_config import SynthConfig  # noqa: E402

SETS = {
    "free": {"background_source": "free"},
    "labelled": {"background_source": "labelled"},
    "cleaned": {"background_source": "cleaned"},
    "harmonize": {"mode": "harmonize"},
    "tile": {"tile": 64},
}


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def main() -> None:
    work = Path(tempfile.mkdtemp())
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    checkpoint = train(dataset, split, TrainConfig(steps=2, **TINY), work / "run", progress=False)
    out: dict = {"checkpoint": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:12]}
    for name, settings in SETS.items():
        synthesize(
            checkpoint, dataset, split, work / name, SynthConfig(n=4, seed=3, **settings), progress=False
        )
        out[name] = digests(work / name)
    session = StudioSession(checkpoint, dataset, split, work / "studio")
    key = sorted(session._backgrounds)[0]
    mask = np.zeros(session.background(key).shape[:2], dtype=bool)
    mask[10:30, 12:40] = True
    job = session.start(key, mask, 1, 5, 2)
    while not session.job(job).finished:
        time.sleep(0.05)
    session.keep(job, 1)
    session.close()
    out["studio"] = digests(work / "studio")
    export_onnx(checkpoint, work / "g.onnx")
    out["onnx (not reproducible)"] = hashlib.sha256((work / "g.onnx").read_bytes()).hexdigest()[:12]
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
