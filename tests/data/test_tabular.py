import numpy as np
import pytest
import torch

from trainwell import ConfigError, DataError
from trainwell.data import load
from trainwell.data.splits import split_indices
from trainwell.data.tabular import encode_columns, load_table, read_columns

HEADER = "age,colour,height,smoker,label\n"


def write_people(path, rows=60):
    """A table with a numeric column that has holes, a categorical one with holes, a text target."""
    lines = []
    for i in range(rows):
        age = "" if i % 7 == 3 else str(20 + i % 40)
        colour = ["red", "blue", "green", "NA"][i % 4]
        smoker = "yes" if i % 3 == 0 else "no"
        label = "sick" if i % 2 else "well"
        lines.append(f"{age},{colour},{150 + i * 0.5},{smoker},{label}\n")
    path.write_text(HEADER + "".join(lines))
    return path


def test_csv_with_categorical_columns_and_missing_values(tmp_path):
    splits = load(write_people(tmp_path / "people.csv"), target="label", seed=0)
    info = splits.info
    assert info.task == "classification" and info.class_names == ["sick", "well"] and info.num_classes == 2
    features = info.preprocessing["feature_names"]
    assert features == ["age", "colour=blue", "colour=green", "colour=red", "colour=<missing>", "height", "smoker=no", "smoker=yes"]
    assert splits.train[0].shape == (48, 8) and splits.val[0].shape == (12, 8)
    assert splits.train[0].dtype == torch.float32 and splits.train[1].dtype == torch.int64
    assert torch.isfinite(splits.train[0]).all() and torch.isfinite(splits.val[0]).all()
    # Numeric columns standardised on the training rows; one-hot columns stay 0/1.
    assert splits.train[0][:, 5].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert set(splits.train[0][:, 1].unique().tolist()) == {0.0, 1.0}
    age = info.preprocessing["columns"][0]
    assert age["kind"] == "numeric" and age["fill"] > 0
    # Stratified: 30 of each class, 6 of each held out.
    assert torch.bincount(splits.val[1]).tolist() == [6, 6]


def test_imputed_median_comes_from_training_rows_only(tmp_path):
    path = tmp_path / "t.csv"
    ages = [1, 2, 3, None, 4, 5, 6, 7, 8, 1000]
    path.write_text("age,label\n" + "".join(f"{'' if v is None else v},{i % 2}\n" for i, v in enumerate(ages)))
    splits = load_table(path, "label", val_fraction=0.2, seed=0)
    train_index, _ = split_indices(np.array([i % 2 for i in range(10)]), 10, 0.2, 0)
    fill = splits.info.preprocessing["columns"][0]["fill"]
    assert fill == float(np.median([ages[i] for i in train_index if ages[i] is not None]))


def test_missing_policy_drop_and_error(tmp_path):
    path = write_people(tmp_path / "people.csv")
    dropped = load(path, target="label", missing="drop")
    incomplete = {i for i in range(60) if i % 7 == 3 or i % 4 == 3}
    assert len(dropped.train[1]) + len(dropped.val[1]) == 60 - len(incomplete)
    assert "colour=<missing>" not in dropped.info.preprocessing["feature_names"]
    with pytest.raises(DataError, match=r"people.csv' has a missing value at row 3 \(line 5\), column 'age', and missing='error'"):
        load(path, target="label", missing="error")


def test_rows_without_target_are_dropped(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "".join(f"{i},{'' if i == 4 else i % 2}\n" for i in range(20)))
    splits = load(path, target="y")
    assert len(splits.train[1]) + len(splits.val[1]) == 19
    assert "Dropping 1 row(s)" in caplog.text


def test_task_inferred_from_the_target_and_overridable(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,grade,price,score\n" + "".join(f"{i},{i % 3},{i * 1.37},{i % 5 * 0.5}\n" for i in range(30)))
    assert load(path, target="grade").info.task == "classification"
    regression = load(path, target="price")
    assert regression.info.task == "regression" and regression.info.num_classes is None
    assert regression.train[1].dtype == torch.float32 and regression.info.num_outputs == 1
    forced = load(path, target="grade", task="regression")
    assert forced.info.task == "regression"
    assert load(path, target="score").info.task == "regression"
    assert load(path, target="score", task="classification").info.class_names == ["0", "0.5", "1", "1.5", "2"]
    with pytest.raises(DataError, match="task='regression' needs a numeric target"):
        load(write_people(tmp_path / "p.csv"), target="label", task="regression")


def test_target_that_does_not_exist_names_the_columns(tmp_path):
    path = write_people(tmp_path / "people.csv")
    with pytest.raises(ConfigError, match=r"target='lable' is not a column of '.*people.csv': its columns are \['age', .*Did you mean 'label'\?"):
        load(path, target="lable")
    with pytest.raises(ConfigError, match="needs a target column"):
        load(path)


def test_inf_is_refused_with_row_and_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,2,0\n3,inf,1\n5,6,0\n7,8,1\n")
    with pytest.raises(DataError, match=r"has an infinite value \(inf\) at row 1 \(line 3\), column 'b'"):
        load(path, target="y")


def test_a_class_with_one_example_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{'rare' if i == 5 else i % 2}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"class 'rare' \(label \d+\) has a single example in '.*t.csv'"):
        load(path, target="y")


def test_ragged_lines_and_missing_files_are_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,2,0\n3,4\n")
    with pytest.raises(DataError, match="line 3 has 2 fields but the header has 3"):
        read_columns(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "absent.csv", target="y")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load(tmp_path / "empty.csv", target="y")


def test_tsv_and_unseen_categories(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("c\ty\n" + "".join(f"{['a', 'b'][i % 2]}\t{i % 2}\n" for i in range(10)))
    splits = load(path, target="y")
    encoded = encode_columns({"c": ["a", "zzz"]}, splits.info.preprocessing, splits.info.normalization)
    assert encoded.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert torch.equal(torch.from_numpy(encode_columns({"c": ["a", "b"]}, splits.info.preprocessing)), torch.eye(2))


def test_parquet_reads_the_same_as_csv(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    from pyarrow import parquet

    table = pyarrow.table({"age": [20.0, None, 30.0, 41.0] * 5, "colour": ["red", "blue", None, "red"] * 5, "y": [0, 1, 0, 1] * 5})
    parquet.write_table(table, tmp_path / "t.parquet")
    splits = load(tmp_path / "t.parquet", target="y")
    assert splits.info.preprocessing["feature_names"] == ["age", "colour=blue", "colour=red", "colour=<missing>"]
    assert splits.info.num_classes == 2 and torch.isfinite(splits.train[0]).all()


def test_bad_options_are_refused(tmp_path):
    path = write_people(tmp_path / "people.csv")
    with pytest.raises(ConfigError, match="missing='guess' is not a valid choice"):
        load(path, target="label", missing="guess")
    with pytest.raises(ConfigError, match="image_size=32 does not apply to tabular data"):
        load(path, target="label", image_size=32)


def test_a_table_that_is_not_utf8_is_refused_naming_it(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("name,label\ncafé,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"table '{path}' is not UTF-8 text \(it holds the byte 0xe9, .*iconv"):
        read_columns(path)


def test_a_damaged_parquet_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "table.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=rf"table '{path}' is not a readable Parquet file"):
        read_columns(path)


def test_a_target_of_a_single_class_is_refused_naming_the_column(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("weight,kind\n" + "".join(f"{i},cat\n" for i in range(20)))
    with pytest.raises(DataError, match=r"the target column 'kind' of '.*pets.csv' holds a single class \('cat'\)"):
        load(path, target="kind")
    # Whole numbers of one value read as one class too; a constant real value has nothing to regress.
    path.write_text("weight,legs\n" + "".join(f"{i},4\n" for i in range(20)))
    with pytest.raises(DataError, match=r"the target column 'legs' .* holds a single class \('4'\)"):
        load(path, target="legs")
    path.write_text("weight,price\n" + "".join(f"{i},9.5\n" for i in range(20)))
    with pytest.raises(DataError, match=r"the target column 'price' of '.*pets.csv': a single value \(9.5\) in every training sample"):
        load(path, target="price", task="regression")


def test_regression_targets_are_standardised_with_the_training_rows_statistics(tmp_path):
    path = tmp_path / "houses.csv"
    prices = [400 + 13.7 * i + (i % 5) * 40 for i in range(50)]
    path.write_text("rooms,price\n" + "".join(f"{i % 6},{price}\n" for i, price in enumerate(prices)))
    splits = load(path, target="price", seed=0)
    info = splits.info
    assert info.task == "regression" and splits.train[1].dtype == torch.float32
    train_index, _ = split_indices(None, 50, 0.2, 0)
    raw = torch.tensor(prices, dtype=torch.float64)[torch.from_numpy(train_index)]
    assert info.target_scaling == {"mean": [pytest.approx(raw.mean().item())], "std": [pytest.approx(raw.std().item())]}
    assert splits.train[1].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert splits.train[1].std().item() == pytest.approx(1.0, abs=1e-5)
    # The validation targets are scaled with the training rows' statistics, and scale back exactly.
    from trainwell.data.targets import target_scaling_of

    restored = target_scaling_of(info).unscale(torch.cat([splits.train[1], splits.val[1]]).double())
    assert sorted(restored.tolist()) == pytest.approx(sorted(prices))
