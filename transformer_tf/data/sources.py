"""Where sentence pairs come from: each source returns {split: (sources, targets)}."""

import gzip
from pathlib import Path

from transformer_tf.data import synthetic
from transformer_tf.errors import UserError

SPLITS = ("train", "validation", "test")


def load_splits(data_config):
    """All splits of the configured data source, as lists of strings."""
    if data_config.source == "synthetic":
        return synthetic.generate_splits(data_config.train_size, data_config.validation_size,
                                         data_config.test_size, data_config.seed)
    raise ValueError(f"unknown data source {data_config.source!r}")


def read_lines(path):
    """The lines of a UTF-8 text file (`.gz` read transparently), without line ends."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file '{path}' not found.")
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError:
                raise UserError(f"{path}: line {number} is not UTF-8; convert the file "
                                "(e.g. with iconv) and try again.") from None
    return lines


def read_parallel(source_path, target_path):
    """Two files whose line N translate each other: (sources, targets)."""
    sources, targets = read_lines(source_path), read_lines(target_path)
    if len(sources) != len(targets):
        raise UserError(f"'{source_path}' has {len(sources)} lines but '{target_path}' has "
                        f"{len(targets)}; parallel files need one line per sentence on each "
                        "side.")
    return sources, targets
