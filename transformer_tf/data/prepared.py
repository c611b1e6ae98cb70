"""Training pairs tokenized once (`transformer-tf prepare`), as fairseq-preprocess does:
sharded TFRecord files of token ids and a manifest, which training reads instead of the text.

    <dir>/train-00000-of-00008.tfrecord ...  tf.train.Example: source, target ids; cut
    <dir>/lengths.npy                       each pair's source and target tokens, cut
    <dir>/manifest.json                     files, counts, length histogram, fingerprint

Pair i goes to shard i mod N, and training reads the shards round-robin, so the pairs come
back in the order of the text split: a run trains on exactly the batches it would have
trained on without `prepare`.
"""

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from transformer_tf.data.pipeline import pair_sizes, statistics_of
from transformer_tf.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FILE_RECORDS = 16384  # pairs in each file of a shard
LENGTHS = "lengths.npy"  # [pairs, 3] int32: source tokens, target tokens, cut, in order
_FEATURES = {
    "source": tf.io.RaggedFeature(tf.int64),
    "target": tf.io.RaggedFeature(tf.int64),
    "cut": tf.io.FixedLenFeature([], tf.int64),
}
_PARSE_CHUNK = 1024  # records parsed per call


# Data settings that shape batches, not the pairs: changing them keeps the prepared pairs.
_BATCHING = (
    "max_length",
    "max_source_length",
    "max_target_length",
    "batch_size",
    "batch_tokens",
    "shuffle_buffer",
    "pad_to_buckets",
    "input_shards",
    "prepared_dir",
    "cache_dir",
    "validation",
    "test",
)


def fingerprint(vocab_files, source_cut, data_config, sampling=None):
    """What the ids depend on: the tokenizer files' bytes, where sources are cut
    (`model.pe_input`), the data settings that choose the training pairs and, when the
    segmentations are sampled, how (`sampling`: (alpha, nbest, copies)). Prepared pairs
    with another fingerprint are refused."""
    digest = hashlib.sha256()
    for path in vocab_files:
        digest.update(Path(path).read_bytes())
    data = {k: v for k, v in dataclasses.asdict(data_config).items() if k not in _BATCHING}
    chosen = [source_cut, data] if sampling is None else [source_cut, data, list(sampling)]
    digest.update(json.dumps(chosen, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def write_prepared(pairs, directory, shards, fingerprint, log_every_seconds=30.0):
    """Write `pairs` (a dataset of (source ids, target ids, cut), as `training_pairs`
    makes) into `shards` TFRecord files in `directory`, replacing what is there, and
    return the manifest. The files are written beside it first and moved in at the end,
    so an interrupted `prepare` leaves no half-written data behind.
    """
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # Shard k holds pairs k, k + shards, ...; it is written in files of FILE_RECORDS pairs
    # each, so that resuming opens the file of its position instead of reading up to it.
    names = [[] for _ in range(shards)]
    writers = [None] * shards
    written, last_log = 0, time.monotonic()
    for written, (source, target, cut) in enumerate(pairs.as_numpy_iterator(), start=1):
        shard, position = (written - 1) % shards, (written - 1) // shards
        if position % FILE_RECORDS == 0:
            if writers[shard] is not None:
                writers[shard].close()
            names[shard].append(
                f"train-{shard:05d}-of-{shards:05d}.{len(names[shard]):05d}.tfrecord"
            )
            writers[shard] = tf.io.TFRecordWriter(str(partial / names[shard][-1]))
        features = {"source": _ints(source), "target": _ints(target), "cut": _ints([int(cut)])}
        example = tf.train.Example(features=tf.train.Features(feature=features))
        writers[shard].write(example.SerializeToString())
        if time.monotonic() - last_log > log_every_seconds:
            log.info("prepared %s pairs", f"{written:,}")
            last_log = time.monotonic()
    for writer in writers:
        if writer is not None:
            writer.close()
    # Counted from the files just written: the statistics describe what training reads.
    # Each pair's lengths are kept, in order (12 bytes a pair), so that a worker reading
    # some of the files, and a resumed run finding its block, need no pass over the data.
    rows = pair_sizes(_read(partial, names))
    np.save(partial / LENGTHS, rows.astype(np.int32))
    statistics = statistics_of(rows[:, :2], rows[:, 2].sum())
    manifest = {
        "format": 4,
        "fingerprint": fingerprint,
        "shards": names,  # shard k: its files, pairs k, k + shards, ... in order
        "files_records": FILE_RECORDS,
        "files": [name for shard in names for name in shard],
        "pair_lengths": LENGTHS,
        "pairs": statistics.pairs,
        "cut": statistics.cut,
        "source_tokens": sum(s * n for (s, _), n in statistics.lengths.items()),
        "target_tokens": sum(t * n for (_, t), n in statistics.lengths.items()),
        # (source tokens, target tokens, pairs)
        "lengths": sorted([s, t, n] for (s, t), n in statistics.lengths.items()),
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return manifest


def read_prepared(directory, fingerprint):
    """The `PreparedPairs` in `directory`; None when there are none.

    Raises:
        UserError: they were prepared with other tokenizers or another `model.pe_input`,
            or a file the manifest names is missing.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("fingerprint") != fingerprint:
        raise UserError(
            f"'{directory}' holds training pairs prepared from other data, tokenizers, "
            "tokenizer sampling or model.pe_input than this run's; prepare them again "
            "(transformer-tf prepare --config ...) or delete that folder to train from the text."
        )
    if manifest.get("format") != 4:
        raise UserError(
            f"'{directory}' holds training pairs prepared by an older version of the package; "
            "prepare them again (transformer-tf prepare --config ...)."
        )
    names = [*manifest["files"], manifest["pair_lengths"]]
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise UserError(
            f"'{directory / missing[0]}', named in {path}, is missing; prepare the data "
            "again (transformer-tf prepare --config ...)."
        )
    return PreparedPairs(directory, manifest)


class PreparedPairs:
    """The prepared training pairs of a directory, readable as input streams: stream k of
    n is the files whose number is k mod n, which hold exactly the pairs i with
    i mod n == k (pair i is in file i mod N), in order. A worker so opens only its files.
    """

    def __init__(self, directory, manifest):
        self.directory, self.manifest = Path(directory), manifest
        self.shards = manifest["shards"]

    def _files(self, index, count):
        if len(self.shards) % count:
            raise UserError(
                f"the {len(self.shards)} shards prepared in '{self.directory}' cannot be "
                f"shared evenly by {count} input streams (data.input_shards, or one per "
                f"worker); prepare again with --shards a multiple of {count}."
            )
        return self.shards[index::count]

    def stream(self, index, count, skip=0):
        """The (source ids, target ids, cut) of stream `index` of `count`, after its first
        `skip` (records skipped unread: resuming costs no parsing)."""
        files = self._files(index, count)
        return _read(self.directory, files, skip, self.manifest["files_records"])

    def statistics(self, index, count):
        """The `LengthStatistics` of stream `index` of `count`, from the lengths file."""
        self._files(index, count)
        rows = np.load(self.directory / self.manifest["pair_lengths"], mmap_mode="r")
        rows = rows[index::count]
        return statistics_of(rows[:, :2], int(rows[:, 2].sum()))


def _read(directory, shards, skip=0, file_records=FILE_RECORDS):
    """The records of `shards` (each a list of files), one from each shard in turn (the
    order `write_prepared` dealt them in), after the first `skip`, parsed into (source ids,
    target ids, cut) int32/bool vectors. Skipping opens each shard at the file of its
    position and reads at most `file_records` records of it unparsed: the same time at
    any position."""

    def parse(serialized):
        example = tf.io.parse_example(serialized, _FEATURES)
        return (
            tf.cast(example["source"], tf.int32),
            tf.cast(example["target"], tf.int32),
            tf.cast(example["cut"], tf.bool),
        )

    # After `skip` records dealt in turn, shard i has given skip // n (+1 for the first
    # skip % n shards), and the next record is in shard skip % n: start the turn there.
    rounds, first = divmod(skip, len(shards))
    order = list(range(first, len(shards))) + list(range(first))
    paths, skips = [], []
    for i in order:
        done, within = divmod(rounds + (i < first), file_records)
        paths.append([str(Path(directory) / name) for name in shards[i][done:]])
        skips.append(within)
    width = max(len(row) for row in paths) or 1
    table = tf.constant([row + [""] * (width - len(row)) for row in paths])
    within_file = tf.constant(skips, tf.int64)

    def shard(index):
        row = tf.gather(table, index)
        files = tf.boolean_mask(row, tf.strings.length(row) > 0)
        return tf.data.TFRecordDataset(files).skip(tf.gather(within_file, index))

    return (
        tf.data.Dataset.range(len(order))
        .interleave(shard, cycle_length=len(order))
        .batch(_PARSE_CHUNK)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        .map(lambda src, tgt, cut: (src, tgt, cut))  # ragged rows -> dense vectors
    )
