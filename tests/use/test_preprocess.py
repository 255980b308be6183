"""New inputs prepared from a run's data.json: the same inputs give the same tensors, and the same outputs, as in training."""

import json

import numpy as np
import pytest
import torch

import trainwell
from trainwell import DataError
from trainwell.data.splits import split_indices
from trainwell.recipes import RunConfig, build_data
from trainwell.use.preprocess import prepare, read_inputs


def _epochs(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [record for record in records if record["event"] == "epoch"]


def _outputs(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(inputs)


@pytest.fixture(scope="module")
def pets_csv(tmp_path_factory):
    """A table with numeric and categorical columns, missing cells, and a 3-class text target."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("pets") / "pets.csv"
    lines = ["weight,colour,age,kind"]
    for row in range(240):
        kind = ("cat", "dog", "fish")[row % 3]
        weight = {"cat": 4.0, "dog": 20.0, "fish": 0.5}[kind] + rng.normal(0, 1.0)
        colour = rng.choice(["black", "white", "orange"]) if row % 17 else ""
        age = "" if row % 13 == 0 else f"{rng.integers(1, 15)}"
        lines.append(f"{weight:.3f},{colour},{age},{kind}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_rows_are_prepared_exactly_as_in_training_and_predicted_alike(trained_run, pets_csv, tmp_path):
    result = trained_run("pets", data=str(pets_csv), target="kind", epochs=2)
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    splits = build_data(RunConfig(data=str(pets_csv), target="kind"))
    prepared = read_inputs(pets_csv, loaded.info)
    _, val_index = split_indices(prepared.targets.numpy(), len(prepared.targets), 0.2, 0)
    assert torch.equal(prepared.inputs[val_index], splits.val[0])
    assert torch.equal(prepared.targets[val_index], splits.val[1])
    predictions = loaded.predict(pets_csv)
    assert torch.equal(predictions.outputs[val_index], _outputs(result.model, splits.val[0]))
    # The validation rows alone, evaluated from a file, give what training logged for the best epoch.
    rows = pets_csv.read_text().splitlines()
    val_csv = tmp_path / "val.csv"
    val_csv.write_text("\n".join([rows[0], *(rows[1 + i] for i in val_index)]) + "\n")
    evaluation = loaded.evaluate(val_csv)
    best = min(_epochs(result.run_dir), key=lambda row: row["val_loss"])
    assert evaluation.metrics["loss"] == pytest.approx(best["val_loss"], abs=1e-6)
    assert evaluation.metrics["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-9)
    # Without the target column, and from rows in memory, the predictions are the same.
    by_columns = loaded.prepare({"weight": ["4.1", None], "colour": ["black", "purple"], "age": [3, 4]})
    by_rows = loaded.prepare(
        [{"weight": 4.1, "colour": "black", "age": 3}, {"weight": None, "colour": "purple", "age": 4}]
    )
    assert torch.equal(by_columns, by_rows) and by_columns.shape == (2, loaded.info.input_shape[0])


def test_table_mismatches_are_refused_naming_the_column(trained_run, pets_csv, tmp_path):
    result = trained_run("pets", data=str(pets_csv), target="kind", epochs=2)
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("weight,color,age\n4.0,black,3\n")
    with pytest.raises(
        DataError,
        match=r"lacks 1 column\(s\) that the model was trained on: 'colour'; .* Did you mean 'color' for 'colour'\?",
    ):
        loaded.predict(renamed)
    text_in_number = tmp_path / "text.csv"
    text_in_number.write_text("weight,colour,age\nheavy,black,3\n")
    with pytest.raises(DataError, match=r"has 'heavy' at row 0, column 'weight', which was numeric in training"):
        loaded.predict(text_in_number)
    unknown_label = tmp_path / "label.csv"
    unknown_label.write_text("weight,colour,age,kind\n4.0,black,3,bird\n")
    with pytest.raises(
        DataError,
        match=r"has the label 'bird' at row 0, which is not a class of the run: its classes are \['cat', 'dog', 'fish'\]",
    ):
        loaded.evaluate(unknown_label)
    with pytest.raises(
        DataError, match=r"is not a table: the run was trained on rows of features, so it reads .csv, .tsv or .parquet"
    ):
        loaded.predict(tmp_path)
    with pytest.raises(DataError, match=r"cannot prepare a list for a model trained on tabular data"):
        loaded.prepare(["4.0,black,3"])
    with pytest.raises(DataError, match=r"inputs of shape \(2, 3\) do not match the training data"):
        loaded.predict(torch.zeros(2, 3))


def test_missing_cells_are_refused_when_training_never_imputed(tmp_path):
    from trainwell.data.tabular import load_table
    from trainwell.use.preprocess import encode_table

    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    info = load_table(path, target="y", missing="drop").info
    with pytest.raises(DataError, match=r"missing value at row 1, column 'b' .* trained with missing='drop'"):
        encode_table({"a": ["1", "2"], "b": ["0", ""]}, info, "rows")


def _write_images(root, rng):
    from PIL import Image

    patterns = {
        "bars": lambda image: image.__setitem__((slice(None), slice(2, 4)), 230),
        "rows": lambda image: image.__setitem__((slice(2, 4), slice(None)), 230),
    }
    for name, draw in patterns.items():
        (root / name).mkdir(parents=True)
        for index in range(24):
            image = rng.integers(0, 60, (12, 12, 3)).astype(np.uint8)
            draw(image)
            Image.fromarray(image).save(root / name / f"{index:02d}.png")
    # One larger image: resized to the first image's size, in training and in prediction alike.
    Image.fromarray(rng.integers(0, 255, (20, 16, 3)).astype(np.uint8)).save(root / "rows" / "99-large.png")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    pytest.importorskip("PIL")
    root = tmp_path_factory.mktemp("images") / "shapes"
    _write_images(root, np.random.default_rng(0))
    return root


def test_an_image_folder_is_prepared_exactly_as_in_training(trained_run, image_folder, tmp_path):
    result = trained_run(
        "images", data=str(image_folder), model="cnn", model_args={"channels": [8, 16]}, epochs=2, batch_size=8
    )
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    splits = build_data(RunConfig(data=str(image_folder), model="cnn", batch_size=8))
    prepared = read_inputs(image_folder, loaded.info)
    assert prepared.ids[0] == "bars/00.png" and prepared.targets is not None
    _, val_index = split_indices(prepared.targets.numpy(), len(prepared.targets), 0.2, 0)
    assert torch.equal(prepared.inputs[val_index], splits.val[0])
    predictions = loaded.predict(image_folder)
    # The inputs are equal bit for bit (above); a convolution's outputs may differ in the last bits
    # between batches of other sizes (CPU kernels pick their blocking by batch size, e.g. with AVX-512).
    assert torch.allclose(predictions.outputs[val_index], _outputs(result.model, splits.val[0]), rtol=1e-5, atol=1e-6)
    # One file alone gives the same as in the folder.
    single = loaded.predict(image_folder / "rows" / "99-large.png")
    assert torch.allclose(single.outputs[0], predictions.outputs[prepared.ids.index("rows/99-large.png")], atol=1e-6)
    # A folder of images without class folders predicts but carries no labels.
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes((image_folder / "bars" / "01.png").read_bytes())
    assert read_inputs(flat, loaded.info).targets is None
    (flat / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"'.*broken\.png' could not be decoded as an image"):
        loaded.predict(flat)
    with pytest.raises(DataError, match=r"is not an image by its extension"):
        loaded.predict(_a_file(tmp_path, "rows.csv"))


def _a_file(folder, name):
    path = folder / name
    path.write_text("a,b\n1,2\n")
    return path


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory):
    """MNIST-format files of 10x10 images in 4 classes, each lighting its own band of rows."""
    from trainwell.data.idx import write_idx_split

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("idx") / "bands"
    for split, count in (("train", 200), ("test", 60)):
        labels = np.arange(count) % 4
        images = rng.integers(0, 80, (count, 10, 10))
        for image, label in zip(images, labels):
            image[2 * label : 2 * label + 2] = 255
        write_idx_split(folder, split, images.astype(np.uint8), labels.astype(np.uint8))
    return folder


def test_idx_images_are_prepared_as_in_training_and_another_size_is_refused(trained_run, idx_folder, tmp_path):
    from trainwell.data.idx import write_idx

    result = trained_run("idx", data=str(idx_folder), data_format="idx", epochs=1)
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    splits = build_data(RunConfig(data=str(idx_folder), data_format="idx"))
    prepared = read_inputs(idx_folder, loaded.info)  # a folder: its test split, with labels
    assert torch.equal(prepared.inputs, splits.test[0]) and torch.equal(prepared.targets, splits.test[1])
    images_file = idx_folder / "t10k-images-idx3-ubyte.gz"
    assert torch.equal(loaded.predict(images_file).outputs, _outputs(result.model, splits.test[0]))
    wrong = write_idx(tmp_path / "big-idx3-ubyte", np.zeros((3, 12, 12), dtype=np.uint8))
    with pytest.raises(DataError, match=r"holds images of shape \(12, 12\), but the model was trained on 10x10 images"):
        loaded.predict(wrong)


@pytest.fixture(scope="module")
def reviews_jsonl(tmp_path_factory):
    rng = np.random.default_rng(0)
    good, bad = ["great", "fun", "lovely", "superb"], ["dull", "awful", "boring", "bad"]
    lines = []
    for index in range(120):
        words = good if index % 2 else bad
        text = " ".join(rng.choice(words + ["film", "the", "was"], size=rng.integers(2, 7)))
        lines.append(json.dumps({"text": f"{words[index % 4]} {text}", "label": "pos" if index % 2 else "neg"}))
    path = tmp_path_factory.mktemp("text") / "reviews.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_texts_are_encoded_with_the_runs_vocabulary(trained_run, reviews_jsonl, tmp_path):
    result = trained_run("text", data=str(reviews_jsonl), model="gru", epochs=2)
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    splits = build_data(RunConfig(data=str(reviews_jsonl), model="gru"))
    prepared = read_inputs(reviews_jsonl, loaded.info)
    _, val_index = split_indices(prepared.targets.numpy(), len(prepared.targets), 0.2, 0)
    assert torch.equal(prepared.inputs[val_index], splits.val[0])
    assert torch.equal(loaded.predict(reviews_jsonl).outputs[val_index], _outputs(result.model, splits.val[0]))
    lines = tmp_path / "new.txt"
    lines.write_text("Great fun, superb!\n\nutterly unknown words\n")
    from_file = read_inputs(lines, loaded.info)
    assert from_file.ids == ["1", "3"] and torch.equal(
        from_file.inputs, prepare(["Great fun, superb!", "utterly unknown words"], loaded.info)
    )
    assert from_file.inputs[1].tolist()[:3] == [1, 1, 1]  # unknown tokens, as training encodes them
    with pytest.raises(
        DataError, match=r"has the suffix '.png': a run trained on texts reads .jsonl, .csv, .tsv, or .txt"
    ):
        loaded.predict(_a_file(tmp_path, "x.png"))
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"body": "great"}\n')
    with pytest.raises(DataError, match=r"line 1 has no 'text' text"):
        loaded.predict(no_text)
    with pytest.raises(DataError, match=r"inputs are torch.float32, but the model reads token ids"):
        loaded.predict(torch.zeros(2, loaded.info.input_shape[0]))


def test_a_missing_input_is_refused(tmp_path):
    from trainwell.data import load

    with pytest.raises(DataError, match=r"input '.*nothing.csv' does not exist"):
        read_inputs(tmp_path / "nothing.csv", load("iris").info)
