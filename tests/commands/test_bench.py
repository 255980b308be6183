from trainwell.cli import main


def test_bench_precision_prints_a_table_per_precision(capsys):
    assert main(["bench", "precision", "--model", "mlp-tabular", "--batch-size", "32", "--steps", "3", "--rounds", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| fp32 |" in out and "| bf16 |" in out and "| fp16 |" not in out
    assert "speed-up vs fp32" in out


def test_bench_precision_refuses_bad_values(capsys):
    assert_exit = None
    try:
        main(["bench", "precision", "--steps", "0"])
    except SystemExit as exited:
        assert_exit = exited.code
    assert assert_exit == 2
    assert "--steps: 0 is out of range" in capsys.readouterr().err
