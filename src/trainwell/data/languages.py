"""Word language: which of seven languages a word comes from, read character by character.

Real words, no download: the word-frequency lists (built from film subtitles) that
pyspellchecker ships for its spelling dictionaries; install it with
``pip install 'trainwell[text]'``. Each language contributes its most frequent alphabetic
words; words found in more than one of the lists (``no``, ``film``) are dropped as ambiguous,
and every language keeps the same number of words, so the majority-class baseline is 1/7.
Words become character ids, padded at the end with 0.
"""

from __future__ import annotations

import functools
import gzip
import heapq
import importlib.util
import json
from pathlib import Path

import torch

from trainwell.exceptions import DataError

LANGUAGES = ("en", "de", "es", "fr", "it", "nl", "pt")
WORDS_PER_LANGUAGE = 3000
MAX_WORD_LENGTH = 16
PAD_ID, UNKNOWN_ID = 0, 1


def load_word_language(val_fraction: float = 0.2, seed: int = 0):
    """The word-language task: character ids ``(N, 16)`` and language labels, split stratified.

    The character vocabulary comes from the training words only; characters seen only in
    validation words map to the unknown id.
    """
    from sklearn.model_selection import train_test_split

    from trainwell.data.bundled import DataInfo, Splits

    words_by_language = {language: _frequent_words(language) for language in LANGUAGES}
    seen_in: dict[str, int] = {}
    for words in words_by_language.values():
        for word in words:
            seen_in[word] = seen_in.get(word, 0) + 1
    unambiguous = {language: [w for w in words if seen_in[w] == 1] for language, words in words_by_language.items()}
    per_language = min(WORDS_PER_LANGUAGE, *(len(words) for words in unambiguous.values()))
    words, labels = [], []
    for label, language in enumerate(LANGUAGES):
        words += unambiguous[language][:per_language]
        labels += [label] * per_language
    train_words, val_words, train_labels, val_labels = train_test_split(
        words, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    alphabet = "".join(sorted({character for word in train_words for character in word}))
    info = DataInfo(
        name="word_language",
        task="classification",
        input_shape=(MAX_WORD_LENGTH,),
        num_classes=len(LANGUAGES),
        class_names=list(LANGUAGES),
        vocab_size=len(alphabet) + 2,
        preprocessing={
            "alphabet": alphabet,
            "pad_id": PAD_ID,
            "unknown_id": UNKNOWN_ID,
            "max_len": MAX_WORD_LENGTH,
            "words_per_language": per_language,
            "source": "pyspellchecker word-frequency lists (OpenSubtitles)",
        },
    )
    return Splits(
        train=(encode_words(train_words, alphabet), torch.tensor(train_labels)),
        val=(encode_words(val_words, alphabet), torch.tensor(val_labels)),
        info=info,
    )


def encode_words(words: list[str], alphabet: str, max_len: int = MAX_WORD_LENGTH) -> torch.Tensor:
    """Character ids ``(len(words), max_len)``: 2.. for the alphabet, 1 for others, 0 as padding.

    Example:
        >>> encode_words(["abba", "c"], "ab", max_len=5).tolist()
        [[2, 3, 3, 2, 0], [1, 0, 0, 0, 0]]
    """
    ids = {character: index + 2 for index, character in enumerate(alphabet)}
    encoded = torch.full((len(words), max_len), PAD_ID, dtype=torch.int64)
    for row, word in enumerate(words):
        codes = [ids.get(character, UNKNOWN_ID) for character in word[:max_len]]
        encoded[row, : len(codes)] = torch.tensor(codes, dtype=torch.int64)
    return encoded


@functools.cache
def _frequent_words(language: str) -> tuple[str, ...]:
    """The language's most frequent alphabetic words of 2 to 16 letters, most frequent first.

    Cached: parsing the lists takes seconds, and a process that loads the set twice (a
    benchmark over seeds) need not pay it again.
    """
    found = importlib.util.find_spec("spellchecker")
    if found is None or not found.submodule_search_locations:
        raise DataError(
            "data='word_language' needs the pyspellchecker package, which ships the word lists: "
            "install it with pip install 'trainwell[text]'."
        )
    path = Path(found.submodule_search_locations[0]) / "resources" / f"{language}.json.gz"
    if not path.is_file():
        raise DataError(
            f"data='word_language': pyspellchecker has no {path.name}; reinstall it with pip install 'trainwell[text]'."
        )
    frequencies = json.loads(gzip.decompress(path.read_bytes()))
    ranked = heapq.nlargest(3 * WORDS_PER_LANGUAGE, frequencies, key=frequencies.get)
    # More candidates than needed, as words shared between languages are dropped afterwards.
    return tuple(
        [word for word in ranked if word.isalpha() and 2 <= len(word) <= MAX_WORD_LENGTH][: 2 * WORDS_PER_LANGUAGE]
    )
