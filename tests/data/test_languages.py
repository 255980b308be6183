import importlib.util

import pytest
import torch

from trainwell import DataError
from trainwell.data import languages, load_bundled
from trainwell.data.languages import LANGUAGES, encode_words


@pytest.fixture(scope="module")
def splits():
    return load_bundled("word_language")


def test_balanced_classes_and_a_stratified_split(splits):
    (_, train_y), (_, val_y) = splits.train, splits.val
    per_language = splits.info.preprocessing["words_per_language"]
    assert per_language >= 2000
    assert torch.bincount(torch.cat([train_y, val_y])).tolist() == [per_language] * len(LANGUAGES)
    assert torch.bincount(val_y).tolist() == [len(val_y) // len(LANGUAGES)] * len(LANGUAGES)
    assert splits.info.class_names == list(LANGUAGES) and splits.info.num_classes == 7


def test_no_word_is_in_both_splits_or_in_two_languages(splits):
    def words(tensor):
        return {tuple(row[row != 0].tolist()) for row in tensor}

    train_words, val_words = words(splits.train[0]), words(splits.val[0])
    assert len(train_words) == len(splits.train[0])  # every word once
    # A validation word may only match a training word through unknown characters.
    unknown = splits.info.preprocessing["unknown_id"]
    assert not {w for w in train_words & val_words if unknown not in w}


def test_the_alphabet_comes_from_the_training_words(splits):
    alphabet = splits.info.preprocessing["alphabet"]
    assert splits.info.vocab_size == len(alphabet) + 2
    assert int(splits.train[0].max()) == len(alphabet) + 1
    assert "é" in alphabet and "ß" in alphabet


def test_encode_words_pads_at_the_end_and_marks_unknown_characters():
    assert encode_words(["abba", "c", "abcdefg"], "ab", max_len=5).tolist() == [
        [2, 3, 3, 2, 0],
        [1, 0, 0, 0, 0],
        [2, 3, 1, 1, 1],
    ]


def test_missing_pyspellchecker_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "spellchecker" else real(name, *a)
    )
    languages._frequent_words.cache_clear()
    with pytest.raises(DataError, match=r"pip install 'trainwell\[text\]'"):
        load_bundled("word_language")
