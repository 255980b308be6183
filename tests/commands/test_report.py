from trainwell.cli import main


def test_report_rewrites_the_html(tmp_path, capsys):
    assert main(["train", "--data", "iris", "--epochs", "2", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (tmp_path / "run" / "report.html").unlink()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r.html")
    assert "<h2>Learning curves</h2>" in (tmp_path / "r.html").read_text()
    assert main(["report", str(tmp_path / "run")]) == 0 and (tmp_path / "run" / "report.html").is_file()


def test_report_of_a_directory_without_metrics_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no metrics.jsonl" in capsys.readouterr().err
