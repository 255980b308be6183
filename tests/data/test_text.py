import json

import numpy as np
import pytest
import torch

from trainwell import DataError
from trainwell.data import load
from trainwell.data.splits import split_indices
from trainwell.data.text import PAD_ID, UNK_ID, build_vocabulary, encode_texts, lengths, padding_mask, tokenize

REVIEWS = [
    ("A wonderful, moving film.", "pos"),
    ("Dull and far too long", "neg"),
    ("I loved every minute!", "pos"),
    ("Boring plot; wooden acting.", "neg"),
    ("Great cast, great story", "pos"),
    ("A waste of two hours", "neg"),
] * 4


def write_jsonl(path, records=REVIEWS):
    path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in records))
    return path


def test_jsonl_texts_become_padded_token_ids_with_a_vocabulary(tmp_path):
    splits = load(write_jsonl(tmp_path / "reviews.jsonl"), seed=0)
    info = splits.info
    assert info.class_names == ["neg", "pos"] and info.task == "classification"
    tokens = splits.train[0]
    assert tokens.dtype == torch.int64 and tokens.shape == (19, info.input_shape[0])
    vocabulary = info.preprocessing["vocabulary"]
    assert vocabulary[:2] == ["<pad>", "<unk>"] and info.vocab_size == len(vocabulary)
    assert int(tokens.max()) < info.vocab_size
    # The longest training text sets the length; shorter ones are padded with 0 on the right.
    assert info.input_shape == (max(len(tokenize(text)) for text, _ in REVIEWS),)
    assert (lengths(tokens) > 0).all() and padding_mask(tokens).any()
    for row in tokens:
        length = int(lengths(row[None]))
        assert (row[length:] == PAD_ID).all() and (row[:length] != PAD_ID).all()


def test_vocabulary_comes_from_the_training_split_only(tmp_path):
    records = REVIEWS + [("zebra crossing", "pos"), ("zebra crossing", "neg")]
    labels = np.array([1 if label == "pos" else 0 for _, label in records])
    # A seed whose split leaves both zebra texts to validation: their words must be unknown.
    seed = next(s for s in range(100) if {24, 25} <= set(split_indices(labels, len(records), 0.2, s)[1].tolist()))
    splits = load(write_jsonl(tmp_path / "r.jsonl", records), seed=seed)
    train_index, _ = split_indices(labels, len(records), 0.2, seed)
    train_tokens = {token for i in train_index for token in tokenize(records[i][0])}
    assert set(splits.info.preprocessing["vocabulary"][2:]) == train_tokens
    assert "zebra" not in train_tokens
    assert (splits.val[0] == UNK_ID).any() and not (splits.train[0] == UNK_ID).any()


def test_csv_text_with_named_columns_and_max_length(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("review,stars\n" + "".join(f'"{text}",{1 if label == "pos" else 0}\n' for text, label in REVIEWS))
    splits = load(path, format="text", text_column="review", target="stars", max_length=3)
    assert splits.info.input_shape == (3,) and splits.train[0].shape[1] == 3
    assert splits.info.class_names == ["0", "1"]
    assert splits.info.preprocessing["text_column"] == "review"


def test_encode_texts_reuses_the_saved_vocabulary():
    preprocessing = {"vocabulary": build_vocabulary([tokenize("good good bad")]), "max_length": 4}
    assert preprocessing["vocabulary"] == ["<pad>", "<unk>", "good", "bad"]
    assert encode_texts(["Bad, good!", "unknown"], preprocessing).tolist() == [[3, 1, 2, 1], [1, 0, 0, 0]]


def test_min_freq_and_max_size():
    texts = [["a", "a", "b", "c"], ["a", "b"]]
    assert build_vocabulary(texts, min_freq=2) == ["<pad>", "<unk>", "a", "b"]
    assert build_vocabulary(texts, max_size=3) == ["<pad>", "<unk>", "a"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok", "label": 1}\nnot json\n', r"line 2 is not valid JSON"),
        ('{"text": "ok", "label": 1}\n{"label": 0}\n', r"line 2 has no 'text' text"),
        ('{"text": "ok", "label": 1}\n{"text": "  ", "label": 0}\n', r"line 2 has an empty 'text' text"),
        ('{"text": "ok", "label": 1}\n{"text": "fine"}\n', r"line 2 has no 'label' label"),
        ('[1, 2]\n', r"line 1 holds a list"),
    ],
)
def test_bad_records_are_named_by_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load(path)


def test_unknown_csv_column_and_single_example_class(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("body,label\nhello,1\n")
    with pytest.raises(DataError, match=r"column 'text' is not in '.*r.csv': its columns are \['body', 'label'\]"):
        load(path, format="text")
    records = REVIEWS + [("one of a kind", "meh")]
    with pytest.raises(DataError, match=r"class 'meh' \(label 0\) has a single example"):
        load(write_jsonl(tmp_path / "r.jsonl", records))


def test_texts_of_a_single_label_are_refused_naming_the_column(tmp_path):
    path = write_jsonl(tmp_path / "reviews.jsonl", [(text, "pos") for text, _ in REVIEWS])
    with pytest.raises(DataError, match=r"the label column 'label' of '.*reviews.jsonl' holds a single class \('pos'\)"):
        load(path)
