from PIL import Image

from trainwell.cli import main


def test_plot_overlays_several_runs(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["train", "--data", "iris", "--epochs", "2", "--out", str(tmp_path / name), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "both.png")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "both.png")
    assert Image.open(tmp_path / "both.png").size == (1500, 420)


def test_plot_of_a_missing_run_exits_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
