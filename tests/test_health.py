"""`gan.health`: a collapsed run is named, healthy ones are not, and the checkpoint written
before a collapse is the one to paint with."""

from __future__ import annotations

import json
import math

import pytest

from defectgen.gan.health import (
    collapse_warning,
    find_collapse,
    healthy_checkpoint,
    read_metrics,
    run_warning,
)

# hole L1 logged every 10 steps by the mission's two bf16 generators (session 14): g0 collapsed to
# white fills at step 560, g1 did not (a 0.56 spike at step 310 and noise of 0.16-0.38).
G0 = [0.653, 0.618, 0.487, 0.42, 0.457, 0.342, 0.324, 0.481, 0.369, 0.296, 0.39, 0.252, 0.363, 0.24, 0.294,
      0.237, 0.222, 0.208, 0.283, 0.287, 0.273, 0.294, 0.227, 0.277, 0.284, 0.243, 0.324, 0.226, 0.231, 0.242,
      0.345, 0.322, 0.238, 0.255, 0.253, 0.264, 0.171, 0.223, 0.274, 0.228, 0.166, 0.275, 0.3, 0.275, 0.229,
      0.257, 0.241, 0.284, 0.212, 0.209, 0.234, 0.213, 0.273, 0.23, 0.276, 0.747, 1.318, 1.185, 1.084,
      1.323]  # fmt: skip
G1 = [0.952, 0.383, 0.321, 0.303, 0.414, 0.311, 0.233, 0.302, 0.297, 0.337, 0.321, 0.346, 0.32, 0.357, 0.212,
      0.236, 0.361, 0.264, 0.305, 0.203, 0.263, 0.283, 0.251, 0.265, 0.275, 0.378, 0.2, 0.244, 0.213, 0.275,
      0.562, 0.237, 0.173, 0.26, 0.287, 0.246, 0.307, 0.254, 0.194, 0.306, 0.227, 0.283, 0.29, 0.21, 0.314,
      0.313, 0.199, 0.298, 0.254, 0.377, 0.287, 0.281, 0.284, 0.163, 0.258, 0.227, 0.323, 0.351, 0.332,
      0.243]  # fmt: skip


# the discriminator's loss logged every 10 steps by the session-17 mission's two StyleGAN decoders
# (`stylegan-small`, 600 steps, bf16): d1's adversarial game diverged at step 330 and never came back.
D0 = [191.7, 25.52, 1.07, 0.8981, 0.8388, 0.9456, 0.937, 0.922, 1.081, 0.823, 0.8776, 0.992, 1.059,
      0.9589, 1.003, 0.8518, 0.8951, 1.191, 0.9887, 0.763, 1.242, 0.9865, 1.011, 1.044, 0.9365, 1.247,
      1.208, 1.067, 0.7645, 1.045, 1.028, 1.183, 1.079, 1.04, 1.079, 1.18, 1.545, 1.352, 1.211, 1.175,
      1.168, 1.167, 1.462, 1.344, 1.263, 1.178, 1.134, 0.9954, 1.261, 1.296, 1.22, 1.086, 0.9361, 0.8797,
      0.8511, 1.499, 1.161, 1.027, 0.9937, 0.9224]  # fmt: skip
D1 = [22.36, 1.714, 1.085, 1.144, 1.124, 1.074, 1.004, 1.416, 1.162, 1.275, 1.09, 1.094, 1.135, 1.116,
      1.261, 1.047, 1.161, 1.162, 0.9498, 1.051, 1.449, 1.224, 1.117, 1.229, 1.243, 1.216, 1.166, 1.303,
      1.221, 1.163, 1.07, 1.022, 3.24, 1820000.0, 127400.0, 82460.0, 92610.0, 91660.0, 44310.0, 9569.0,
      9541.0, 9476.0, 8030.0, 7134.0, 6015.0, 4899.0, 4393.0, 3905.0, 3596.0, 2765.0, 3101.0, 2447.0,
      2083.0, 1705.0, 1184.0, 1058.0, 690.9, 864.8, 875.3, 596.0]  # fmt: skip


def _records(values: list[float]) -> list[dict]:
    return [{"step": 10 * (i + 1), "hole_l1": v, "loss_g": 1.0} for i, v in enumerate(values)]


def test_the_collapsed_generator_is_named_with_its_steps():
    warning = collapse_warning(_records(G0))
    assert warning is not None and "from step 560 to 600" in warning and "0.747-1.323" in warning


def test_the_collapse_starts_at_the_first_value_over_the_line_of_the_end_stretch():
    """G0's stretch over 2.5x its median starts at 0.747 (step 560); the last healthy log is 550.
    A spike earlier in the run, back under the line before the end, is not part of it."""
    collapse = find_collapse(_records(G0))
    assert (collapse.onset, collapse.healthy_until) == (560, 550)
    assert [step for step, _ in collapse.tail] == [560, 570, 580, 590, 600]
    spiked = G0[:20] + [1.5] + G0[21:]
    assert find_collapse(_records(spiked)).onset == 560
    dipped = G0[:-4] + [0.6] + G0[-3:]  # one log under the line (0.64) inside the collapse, at 570
    assert (find_collapse(_records(dipped)).onset, find_collapse(_records(dipped)).healthy_until) == (
        560,
        550,
    )


def test_a_resumed_run_is_read_as_it_now_stands():
    """An attempt logged healthy values to step 590 and was killed; the run resumed from its
    checkpoint at 480 and collapsed from 490: the first attempt's logs past 480 are dropped, so
    the last healthy log is 480, not 590."""
    first = _records(G1[:59])
    resumed = [{"step": 490 + 10 * i, "hole_l1": 1.3} for i in range(12)]
    collapse = find_collapse(first + resumed)
    assert (collapse.onset, collapse.healthy_until, collapse.tail[-1][0]) == (490, 480, 600)


def test_odd_log_values_are_skipped_not_fatal():
    odd = [{"step": None, "hole_l1": 9.0}, {"step": "x", "hole_l1": 9.0}, {"step": 5, "hole_l1": 10**400},
           {"step": 6, "hole_l1": "9"}, {"step": True, "hole_l1": 9.0},
           {"step": 7, "hole_l1": float("nan")}]  # fmt: skip
    assert find_collapse(odd + _records(G0)).onset == 560
    assert find_collapse(odd) is None


def _run(tmp_path, values, steps):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(values)))
    for step in steps:
        (run / "checkpoints" / f"step_{step:07d}.pt").write_bytes(b"")
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (run / "checkpoints" / "step_notanumber.pt").write_bytes(b"")
    return run


def test_the_newest_checkpoint_before_the_collapse_is_the_one_to_paint_with(tmp_path):
    """Checkpoints at 300, 500, 550 and 600; the collapse starts at 560, so 550 (the last healthy
    log's step) is chosen; without it, 500; with none before, last.pt and no healthy one."""
    run = _run(tmp_path, G0, [300, 500, 550, 600])
    path, record = healthy_checkpoint(run)
    assert path == run / "checkpoints" / "step_0000550.pt"
    assert record["collapse"]["onset_step"] == 560 and record["collapse"]["healthy_checkpoint"] == path.name
    (run / "checkpoints" / "step_0000550.pt").unlink()
    assert healthy_checkpoint(run)[0].name == "step_0000500.pt"
    assert "step_0000500.pt was written before it" in run_warning(run)
    for step in (300, 500):
        (run / "checkpoints" / f"step_{step:07d}.pt").unlink()
    path, record = healthy_checkpoint(run)
    assert path.name == "last.pt" and record["collapse"]["healthy_checkpoint"] is None
    assert "no checkpoint from before it is kept" in run_warning(run)


def test_a_healthy_run_paints_with_its_last_checkpoint(tmp_path):
    run = _run(tmp_path, G1, [500, 600])
    assert healthy_checkpoint(run) == (
        run / "checkpoints" / "last.pt",
        {"checkpoint": "last.pt", "collapse": None},
    )
    assert run_warning(run) is None
    (run / "metrics.jsonl").unlink()  # a run that logged nothing is not judged
    assert healthy_checkpoint(run)[1]["collapse"] is None and run_warning(run) is None


def test_healthy_runs_and_short_or_recovered_spikes_are_not():
    assert collapse_warning(_records(G1)) is None
    assert collapse_warning(_records(G0[:-1] + [0.25])) is None  # one healthy value at the end: not stuck
    assert collapse_warning(_records(G0[-11:])) is None  # 11 records: too short to judge
    stylegan = [{"step": 10 * i, "loss_g": 1.0} for i in range(60)]  # no hole L1
    assert collapse_warning(stylegan) is None


def test_the_threshold_is_relative_to_the_runs_own_level():
    """A run whose L1 sits 3x higher all along is not collapsed; 2.4x its median at the end is
    under the 2.5x rule, 2.6x over it."""
    assert collapse_warning(_records([3 * v for v in G1])) is None
    assert collapse_warning(_records([0.2] * 50 + [0.48] * 3)) is None
    assert collapse_warning(_records([0.2] * 50 + [0.52] * 3)) is not None


def _stylegan_records(values: list[float]) -> list[dict]:
    return [
        {"step": 10 * (i + 1), "loss_d": v, "loss_g": 1.0, "r1_penalty": 0.01} for i, v in enumerate(values)
    ]


def test_a_diverged_stylegan_run_is_named_by_its_discriminator_s_loss_and_paints_from_before(tmp_path):
    """A StyleGAN run logs no hole L1: its discriminator's loss is read. D1 diverged at step 330
    and stayed diverged for the 45 % of the run after it, so its median over the run is a diverged
    value; the level is the run's best stretch (about 1.1), which D0 never left by 2.5x."""
    assert find_collapse(_stylegan_records(D0)) is None
    collapse = find_collapse(_stylegan_records(D1))
    # its best stretch holds about 1.1, under the floor 2 ln 2: the line is 2.5 x 1.386 = 3.47, so
    # step 330's 3.24 is still under it and the stuck stretch starts at 340
    assert (collapse.key, collapse.onset, collapse.healthy_until) == ("loss_d", 340, 330)
    assert collapse.level == pytest.approx(2 * math.log(2))
    assert "the discriminator's loss (loss_d)" in collapse_warning(_stylegan_records(D1))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _stylegan_records(D1)))
    for name in ("step_0000120.pt", "step_0000240.pt", "step_0000360.pt", "last.pt"):
        (run / "checkpoints" / name).write_bytes(b"")
    path, record = healthy_checkpoint(run)
    assert path.name == "step_0000240.pt" and record["collapse"]["key"] == "loss_d"


def test_a_discriminator_that_won_for_a_while_and_settled_has_not_diverged():
    """loss_d at 0.2 for a stretch (D winning), then back near 1.2: over 2.5x that stretch's level,
    but under 2.5x the loss of a discriminator that cannot tell (2 ln 2); 4.0 at the end is over."""
    settled = [1.3] * 15 + [0.2] * 15 + [1.2] * 30
    assert find_collapse(_stylegan_records(settled)) is None
    assert find_collapse(_stylegan_records(settled[:-3] + [4.0] * 3)).onset == 580


def test_an_inpainter_is_judged_by_its_hole_l1_not_by_its_discriminator_s_loss():
    """A spike of the inpainter's D loss at the end does not name a collapse when its hole L1 is
    healthy; with no hole L1 logged at all, the same values would."""
    records = [{**r, "loss_d": 1.0 if i < 55 else 9.0} for i, r in enumerate(_records(G1))]
    assert find_collapse(records) is None
    assert find_collapse([{k: v for k, v in r.items() if k != "hole_l1"} for r in records]).key == "loss_d"


def test_read_metrics_skips_lines_that_do_not_parse(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _records(G0)) + "\nnot json\n[1, 2]\n")
    assert read_metrics(path) == _records(G0)


def test_train_reads_its_metrics_and_says_so_at_the_end(tmp_path, capsys, monkeypatch):
    """`train` hands the run's logged records to the check and prints what it says."""
    from pathlib import Path

    from defectgen.data import open_dataset
    from defectgen.data.split import make_split
    from defectgen.gan import health
    from defectgen.gan import train as train_module
    from defectgen.gan.config import TrainConfig

    seen = []
    monkeypatch.setattr(health, "collapse_warning", lambda records: seen.append(records) or "PLANTED")
    dataset = open_dataset(str(Path(__file__).parent / "fixtures" / "tiny_folder"))
    config = TrainConfig(preset="tiny", model={"resolution": 32}, batch_size=2, precision="fp32",
                         steps=2, log_every=1, sample_every=2, checkpoint_every=2)  # fmt: skip
    train_module.train(dataset, make_split(dataset, seed=0), config, tmp_path / "run", progress=False)
    assert [r["step"] for r in seen[0]] == [1, 2]
    assert "warning:" in (said := capsys.readouterr().err) and "run: PLANTED" in said
