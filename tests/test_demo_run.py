"""`defectgen demo --quick`: the newcomer's first run, end to end, as CI runs it."""

from __future__ import annotations

import json
import math

from defectgen.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed  # the table itself is checked through results.json below
    results = json.loads((out / "eval" / "results.json").read_text())
    html = (out / "eval" / "report.html").read_text()
    assert 'id="results"' in html and "data:image/png;base64," in html
    for run in results["runs"]:
        for key in ("class_mean_pixel_ap", "positive_dice_plain", "kaggle_dice", "fp_rate_defect_free"):
            assert math.isfinite(run["test"][key]), (run["arm"], key)
    assert {r["arm"] for r in results["runs"]} == {"real", "real+synthetic"}
    assert (out / "synthetic" / "train.csv").exists() and (out / "data_sheet.png").exists()
    # running it again continues: nothing is retrained, the same results come back
    before = (out / "gan" / "checkpoints" / "last.pt").stat().st_mtime
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    assert (out / "gan" / "checkpoints" / "last.pt").stat().st_mtime == before
    again = json.loads((out / "eval" / "results.json").read_text())
    assert again["runs"] == results["runs"]
