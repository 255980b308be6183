import json

from trainwell.cli import main


def test_doctor_names_the_problem_and_the_fix(tmp_path, capsys):
    rows = [(2.54, 2.37), (2.55, 2.34), (2.52, 2.31), (2.46, 2.28), (2.44, 2.25), (2.41, 2.22)]
    lines = [{"event": "run_start", "batch_size": 64, "peak_lr": 1e-5}]
    lines += [{"event": "epoch", "epoch": e, "train_loss": t, "val_loss": v} for e, (t, v) in enumerate(rows, 1)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["doctor", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING the loss plateaued early: train_loss fell only 1% over the first 3 epochs")
    assert "Fix: Raise the lr (peak 1e-05" in out


def test_doctor_of_a_healthy_run(tmp_path, capsys):
    lines = [{"event": "epoch", "epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e} for e in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["doctor", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "No problems found.\n"
