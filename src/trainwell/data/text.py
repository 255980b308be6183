"""Text classification from CSV or JSONL of (text, label): a simple tokenizer and a vocabulary saved with the run.

Texts are lower-cased and split into words and punctuation marks. The vocabulary is built from
the training split only (most frequent first, ties alphabetical), with id 0 for padding and 1
for unknown tokens. Each text becomes a row of token ids, cut to ``max_length`` and padded with
0 on the right, so inputs are one ``(N, max_length)`` int64 tensor. A model finds the padding
with :func:`padding_mask` (True at padding, as ``nn.TransformerEncoder``'s
``src_key_padding_mask`` expects) and the lengths with :func:`lengths` (for
``pack_padded_sequence``). The vocabulary travels in ``info.preprocessing``, so
:func:`encode_texts` turns new texts into the same ids.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.exceptions import DataError
from trainwell.files.reading import reading

if TYPE_CHECKING:
    import torch

    from trainwell.data.bundled import Splits

logger = logging.getLogger("trainwell")

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
# Without max_length, texts are cut at the longest training text, but never beyond this.
MAX_DEFAULT_LENGTH = 256


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks.

    Example:
        >>> tokenize("Great film, 10/10!")
        ['great', 'film', ',', '10', '/', '10', '!']
    """
    return TOKEN_PATTERN.findall(text.lower())


def build_vocabulary(token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = 20_000) -> list[str]:
    """Tokens in id order: ``<pad>``, ``<unk>``, then the most frequent (ties alphabetical).

    Args:
        token_lists: Tokenised training texts.
        min_freq: Tokens seen fewer times become ``<unk>``.
        max_size: Most tokens kept, the two special ones included; None keeps all.

    Example:
        >>> build_vocabulary([["a", "b", "a"], ["c", "a", "b"]])
        ['<pad>', '<unk>', 'a', 'b', 'c']
    """
    counts = Counter(token for tokens in token_lists for token in tokens)
    ranked = sorted((token for token, count in counts.items() if count >= min_freq), key=lambda t: (-counts[t], t))
    if max_size is not None:
        ranked = ranked[: max(0, max_size - 2)]
    return [PAD, UNK, *ranked]


def encode_texts(texts: Sequence[str], preprocessing: dict[str, Any]) -> torch.Tensor:
    """Token ids ``(N, max_length)`` int64 for ``texts``, with the vocabulary and length of ``preprocessing``.

    Example:
        >>> encode_texts(["a b z"], {"vocabulary": ["<pad>", "<unk>", "a", "b"], "max_length": 5}).tolist()
        [[2, 3, 1, 0, 0]]
    """
    import torch

    ids = {token: index for index, token in enumerate(preprocessing["vocabulary"])}
    length = preprocessing["max_length"]
    encoded = np.full((len(texts), length), PAD_ID, dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = [ids.get(token, UNK_ID) for token in tokenize(text)[:length]]
        encoded[row, : len(tokens)] = tokens
    return torch.from_numpy(encoded)


def padding_mask(tokens: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """True where ``tokens`` is padding (``src_key_padding_mask`` of ``nn.TransformerEncoder``)."""
    return tokens == pad_id


def lengths(tokens: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """The number of real tokens in each row (for ``pack_padded_sequence``)."""
    return (tokens != pad_id).sum(dim=1)


def read_text_records(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Texts and labels (as strings) from a CSV/TSV with a header, or a JSONL file of objects.

    Raises:
        DataError: naming the file and the line: a missing file, a line that is not JSON, a
            missing or empty text, a missing label, an unknown column.
    """
    if not path.is_file():
        raise DataError(f"'{path}' does not exist or is not a file: expected a CSV or JSONL file of (text, label).")
    with reading(path, DataError, "text file"):
        records = _records(path, text_column, label_column)
    if not records:
        raise DataError(f"'{path}' holds no records: expected one (text, label) per line.")
    texts, labels = [], []
    for number, record in records:
        text, label = record.get(text_column), record.get(label_column)
        if not isinstance(text, str) or not text.strip():
            what = "has no" if text is None else "has an empty" if isinstance(text, str) else f"has a {type(text).__name__} as its"
            raise DataError(f"'{path}' line {number} {what} {text_column!r} text: every record needs a non-empty text.")
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"'{path}' line {number} has no {label_column!r} label: every record needs one.")
        texts.append(text)
        labels.append(str(label).strip())
    return texts, labels


def _records(path: Path, text_column: str, label_column: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of each record of a JSONL, CSV or TSV file of texts."""
    records: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with path.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"'{path}' line {number} is not valid JSON ({error}): expected one JSON object per line.") from None
                if not isinstance(record, dict):
                    raise DataError(f"'{path}' line {number} holds a {type(record).__name__}: expected a JSON object such as {{\"{text_column}\": ..., \"{label_column}\": ...}}.")
                records.append((number, record))
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream, delimiter=delimiter)
            for column in (text_column, label_column):
                if reader.fieldnames is None or column not in reader.fieldnames:
                    raise DataError(
                        f"column {column!r} is not in '{path}': its columns are {reader.fieldnames or []}. "
                        "Name the text column with text_column=... (--text-column) and the label column with target=... (--target)."
                    )
            records = [(reader.line_num, row) for row in reader]
    return records


def load_text(
    path: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int | None = None,
    min_freq: int = 1,
    max_vocab: int | None = 20_000,
) -> Splits:
    """Load (text, label) records, split them (stratified), build the vocabulary on the training split.

    Args:
        path: A ``.csv``/``.tsv`` with a header, or a ``.jsonl`` of objects.
        val_fraction: Share of records held out for validation.
        seed: Seed of the split.
        text_column: Column (key) holding the text.
        label_column: Column (key) holding the label.
        max_length: Tokens kept per text; None: the longest training text, at most 256.
        min_freq: Tokens seen fewer times in training become ``<unk>``.
        max_vocab: Vocabulary size, special tokens included; None keeps every token.

    Returns:
        :class:`~trainwell.data.Splits`: token ids ``(N, max_length)`` int64 (0 = padding) and
        labels; ``info.vocab_size`` and ``info.preprocessing["vocabulary"]`` describe the ids.

    Raises:
        DataError: see :func:`read_text_records`; a class with a single example.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "reviews.jsonl"
        ...     lines = [{"text": "good fun", "label": "pos"}, {"text": "dull", "label": "neg"}] * 3
        ...     _ = path.write_text("".join(json.dumps(line) + "\\n" for line in lines))
        ...     splits = load_text(path, val_fraction=0.34)
        >>> splits.info.class_names, splits.info.vocab_size, splits.train[0].shape
        (['neg', 'pos'], 5, torch.Size([4, 2]))
    """
    import torch

    from trainwell.data.bundled import DataInfo, Splits
    from trainwell.data.splits import check_several_classes, split_indices

    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise DataError(f"max_length={max_length!r} is out of range: expected an integer ≥ 1, or None.")
    path = Path(path)
    texts, raw_labels = read_text_records(path, text_column, label_column)
    class_names = sorted(set(raw_labels), key=_natural_key)
    check_several_classes(
        class_names, f"the label column {label_column!r} of '{path}'",
        "Check that it is the column to predict (target=..., --target), or add texts of the other classes.",
    )
    position = {name: index for index, name in enumerate(class_names)}
    labels = np.array([position[label] for label in raw_labels], dtype=np.int64)
    train_index, val_index = split_indices(labels, len(labels), val_fraction, seed, class_names, f"'{path}'")
    train_tokens = [tokenize(texts[i]) for i in train_index]
    vocabulary = build_vocabulary(train_tokens, min_freq=min_freq, max_size=max_vocab)
    longest = max(len(tokens) for tokens in train_tokens)
    length = max_length if max_length is not None else min(longest, MAX_DEFAULT_LENGTH)
    cut = sum(len(tokens) > length for tokens in train_tokens)
    if cut:
        logger.info("%d of %d training texts are longer than max_length=%d tokens and are cut.", cut, len(train_tokens), length)
    preprocessing = {
        "format": "text",
        "tokenizer": "lowercase words and punctuation (regex \\w+|[^\\w\\s])",
        "text_column": text_column,
        "label_column": label_column,
        "max_length": length,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "vocabulary": vocabulary,
    }
    inputs = encode_texts(texts, preprocessing)
    info = DataInfo(
        name=str(path),
        task="classification",
        input_shape=(length,),
        num_classes=len(class_names),
        class_names=class_names,
        vocab_size=len(vocabulary),
        preprocessing=preprocessing,
    )
    logger.info(
        "Loaded %d texts of %d classes from '%s' (%d training, %d validation); vocabulary of %d tokens, length %d.",
        len(texts), len(class_names), path, len(train_index), len(val_index), len(vocabulary), length,
    )
    labels_tensor = torch.from_numpy(labels)
    train_index, val_index = torch.from_numpy(train_index), torch.from_numpy(val_index)
    return Splits(train=(inputs[train_index], labels_tensor[train_index]), val=(inputs[val_index], labels_tensor[val_index]), info=info)


def _natural_key(label: str) -> tuple[int, float | str]:
    """Numbers in numeric order first, then the other labels alphabetically."""
    try:
        return 0, float(label)
    except ValueError:
        return 1, label
