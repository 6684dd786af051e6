"""`gan.health`: a collapsed run is named, healthy ones are not, and the checkpoint written
before a collapse is the one to paint with."""

from __future__ import annotations

import json

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
