"""tf.data pipelines: tokenization in the graph, length filtering, shuffling, batching."""

import collections
import dataclasses
import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from transformer_tf.data.tokenizers import PAD_ID, add_bos_eos, cut_source
from transformer_tf.errors import UserError

_TOKENIZE_CHUNK = 1024  # sentences tokenized per call: ragged ops are cheaper in bulk
_UNCUT = 2**31 - 1
_STATISTICS_CHUNK = 65536  # pairs whose lengths are counted at once
_EPOCH_SEEDS = 1_000_003  # epoch e of seed s shuffles with seed s * this + e
_ENDLESS = 2**62


def _tokenize(texts, source_tokenizer, target_tokenizer, source_cut):
    """Dataset of (source ids + EOS cut to `source_cut` tokens, BOS + target ids + EOS,
    whether the source was cut) of a dataset of (source, target) strings."""

    def tokenize(src, tgt):
        src_ids, cut = cut_source(source_tokenizer.tokenize(src), source_cut or _UNCUT)
        tgt_ids = add_bos_eos(target_tokenizer.tokenize(tgt), bos=True)
        return src_ids, tgt_ids, cut

    return (
        texts.batch(_TOKENIZE_CHUNK)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        # Rows of a ragged batch come out typed as ragged; an identity map makes them
        # the dense vectors they are, which padded_batch needs.
        .map(lambda src, tgt, cut: (src, tgt, cut))
    )


def tokenized_pairs(sources, targets, source_tokenizer, target_tokenizer, source_cut=None):
    """Dataset of (source ids + EOS, BOS + target ids + EOS) int32 vectors of two lists of
    strings; sources cut to `source_cut` tokens (the model's `pe_input`) as the translator
    cuts them."""
    texts = tf.data.Dataset.from_tensor_slices((sources, targets))
    pairs = _tokenize(texts, source_tokenizer, target_tokenizer, source_cut)
    return pairs.map(lambda src, tgt, cut: (src, tgt))


def training_pairs(texts, source_tokenizer, target_tokenizer, source_cut=None):
    """The training split for `train_dataset` and `length_statistics`, from a dataset of
    (source, target) strings (`TrainingText.dataset`): (source ids, target ids, whether
    the source was cut), as `tokenized_pairs`. Streamed: each pass reads and tokenizes the
    text again, so memory does not grow with the corpus (`prepare` tokenizes it once)."""
    return _tokenize(texts, source_tokenizer, target_tokenizer, source_cut)


class TextPairs:
    """The training pairs tokenized from text as it is read (`training_pairs`), readable as
    input streams: stream k of n holds pair i for every i with i mod n == k, so a worker
    tokenizes only its streams' pairs.

    Args:
        texts: a dataset of (source, target) strings (`TrainingText.dataset`).
        source_tokenizer, target_tokenizer, source_cut: as `training_pairs`.
    """

    def __init__(self, texts, source_tokenizer, target_tokenizer, source_cut=None):
        self.texts = texts
        self.tokenizers = (source_tokenizer, target_tokenizer)
        self.source_cut = source_cut

    def stream(self, index, count, skip=0):
        """The pairs of stream `index` of `count`, after its first `skip` (read, not
        tokenized: resuming skips them at the cost of reading lines)."""
        texts = self.texts if count == 1 else self.texts.shard(count, index)
        return training_pairs(texts.skip(skip), *self.tokenizers, self.source_cut)

    def statistics(self, index, count):
        """The `LengthStatistics` of stream `index` of `count`, counted by a pass."""
        return length_statistics(self.stream(index, count))


def _within(data_config):
    """Whether a pair keeps to `data_config.length_limits()`."""
    max_source, max_target = data_config.length_limits()
    return lambda s, t, *_: tf.logical_and(tf.size(s) <= max_source, tf.size(t) <= max_target)


class LengthStatistics(NamedTuple):
    """What the length rules and the batching need to know of a training split, counted
    once."""

    pairs: int
    cut: int  # sources longer than the model reads, cut there
    lengths: dict  # (source tokens, target tokens) -> pairs
    # int32 (source tokens, target tokens) of each pair in order, as bytes: which batches
    # each block of pairs makes, so a resumed run finds its block without reading the ones
    # before it (None for merged statistics, which only count)
    per_pair: bytes | None = None

    def pair_lengths(self):
        """[pairs, 2] int32 array of (source tokens, target tokens), in order."""
        return np.frombuffer(self.per_pair, dtype=np.int32).reshape(-1, 2)


def statistics_of(per_pair, cut):
    """`LengthStatistics` of a [pairs, 2] array of (source, target) lengths and the number
    of sources cut."""
    per_pair = np.ascontiguousarray(per_pair, dtype=np.int32)
    rows, counts = np.unique(per_pair, axis=0, return_counts=True) if len(per_pair) else ([], [])
    lengths = {(int(s), int(t)): int(n) for (s, t), n in zip(rows, counts)}
    return LengthStatistics(len(per_pair), int(cut), lengths, per_pair.tobytes())


def pair_sizes(pairs):
    """[pairs, 3] int32 array of (source tokens, target tokens, cut) of `training_pairs`
    (or prepared pairs), in order: one pass over them."""
    sizes = pairs.map(lambda s, t, cut: tf.stack([tf.size(s), tf.size(t), tf.cast(cut, tf.int32)]))
    chunks = list(sizes.batch(_STATISTICS_CHUNK).as_numpy_iterator())
    return np.concatenate(chunks) if chunks else np.zeros([0, 3], np.int32)


def length_statistics(pairs):
    """`LengthStatistics` of `training_pairs` (or prepared pairs): one pass over them."""
    rows = pair_sizes(pairs)
    return statistics_of(rows[:, :2], rows[:, 2].sum())


def merge_statistics(parts):
    """One `LengthStatistics` of several disjoint sets of pairs (counts only)."""
    lengths = collections.Counter()
    for part in parts:
        lengths.update(part.lengths)
    return LengthStatistics(sum(p.pairs for p in parts), sum(p.cut for p in parts), dict(lengths))


def count_length_rules(statistics, data_config):
    """(sources that were cut, pairs longer than the data config's limits, which training
    leaves out), from a split's `LengthStatistics`."""
    max_source, max_target = data_config.length_limits()
    dropped = sum(n for (s, t), n in statistics.lengths.items() if s > max_source or t > max_target)
    return statistics.cut, dropped


def length_buckets(max_length, width=4):
    """Bucket boundaries (exclusive upper lengths): 8, 12, 16, ..., and max_length + 1 last,
    so every pair that passes the length filter has a bucket."""
    return list(range(8, max_length + 1, width)) + [max_length + 1]


def bucket_batch_sizes(boundaries, data_config, replicas=1):
    """Sentences per batch in each bucket: `batch_size`, or with `batch_tokens` as many as
    fit when every row is padded to the bucket's longest length; rounded down to a
    multiple of `replicas` so that every replica gets an equal share."""
    if data_config.batch_tokens is None:
        sizes = [data_config.batch_size] * (len(boundaries) + 1)
    else:
        longest = [bound - 1 for bound in boundaries] + [max(data_config.length_limits())]
        sizes = [data_config.batch_tokens // length for length in longest]
    return [max(replicas, size // replicas * replicas) for size in sizes]


def block_batches(statistics, data_config, replicas=1):
    """Batches `train_dataset` makes of each block of `data_config.shuffle_buffer`
    consecutive pairs (an int array, one entry a block): per block, the pairs within the
    length limits counted per length bucket, over the bucket's batch size; a bucket's last,
    partly filled batch counts if it holds `replicas` pairs."""
    max_source, max_target = data_config.length_limits()
    boundaries = length_buckets(max(max_source, max_target))
    sizes = np.array(bucket_batch_sizes(boundaries, data_config, replicas))
    lengths = statistics.pair_lengths()
    kept = (lengths[:, 0] <= max_source) & (lengths[:, 1] <= max_target)
    bucket = np.searchsorted(boundaries, lengths.max(axis=1, initial=0), side="right")
    block = np.arange(len(lengths)) // data_config.shuffle_buffer
    blocks = int(block[-1]) + 1 if len(block) else 0
    counts = np.bincount(
        (block * len(sizes) + bucket)[kept], minlength=blocks * len(sizes)
    ).reshape(blocks, len(sizes))
    return (counts // sizes + (counts % sizes >= replicas)).sum(axis=1)


def batches_per_epoch(statistics, data_config, replicas=1):
    """Batches `train_dataset` makes of one pass over a split of these `LengthStatistics`."""
    return int(block_batches(statistics, data_config, replicas).sum())


def train_dataset(
    pairs,
    data_config,
    seed,
    start_batch=0,
    num_batches=-1,
    replicas=1,
    statistics=None,
    pairs_after=None,
):
    """Deterministic stream of padded training batches `start_batch` to
    `start_batch + num_batches` (-1: endless) of `training_pairs`.

    Each epoch reads the pairs in blocks of `shuffle_buffer` and makes each block's
    batches on its own: the block's pairs in an order drawn from (`seed`, epoch, block),
    those with more tokens than `data_config.length_limits()` dropped, the rest batched with
    pairs of similar length, `batch_size` sentences or `batch_tokens` tokens (padding
    counted) at a time, a multiple of `replicas`. So the batches of every block are known
    from the pairs' lengths (`statistics`, the `LengthStatistics` of `pairs`, counted with a
    pass over them if not given), and `start_batch` resumes exactly where a run stopped by
    starting at its block: `pairs_after(n)` gives the pairs after the first n without
    tokenizing those (default: `pairs.skip(n)`), and at most one block's batches are made
    again, whatever the step and the corpus size. With `data_config.pad_to_buckets` every
    batch of a bucket has one shape: its bound's length and its batch size (a last, partly
    filled batch gets empty rows).
    Yields (source [batch, src_len], target [batch, tgt_len]) int32, padded with 0.
    """
    statistics = statistics or length_statistics(pairs)
    blocks = block_batches(statistics, data_config, replicas)
    per_epoch = int(blocks.sum())
    if per_epoch == 0:
        raise UserError(
            "no training pair is within the length limits (data.max_length, "
            "max_source_length, max_target_length); raise them or check the training data."
        )
    first_epoch, offset = divmod(start_batch, per_epoch)
    first_block = int(np.searchsorted(np.cumsum(blocks), offset, side="right"))
    offset -= int(blocks[:first_block].sum())
    block_size = data_config.shuffle_buffer
    boundaries = length_buckets(max(data_config.length_limits()))
    sizes = bucket_batch_sizes(boundaries, data_config, replicas)
    within = _within(data_config)

    def block_batches_of(epoch_seed):
        def batches(number, block):
            source, target, cut = block
            keys = tf.random.stateless_uniform([source.nrows()], tf.stack([epoch_seed, number]))
            order = tf.argsort(keys)
            rows = tf.data.Dataset.from_tensor_slices(
                (tf.gather(source, order), tf.gather(target, order), tf.gather(cut, order))
            )
            # Batch sentences of similar length together: padding is wasted compute.
            made = (
                rows.filter(within)
                .map(lambda s, t, cut: (s, t))  # ragged rows -> dense vectors
                .bucket_by_sequence_length(
                    lambda s, t: tf.maximum(tf.size(s), tf.size(t)),
                    bucket_boundaries=boundaries,
                    bucket_batch_sizes=sizes,
                    padding_values=(PAD_ID, PAD_ID),
                    # Fixed shapes (boundary - 1) let XLA compile once per bucket.
                    pad_to_bucket_boundary=data_config.pad_to_buckets,
                )
            )
            if data_config.pad_to_buckets:
                return made.map(fill_bucket)
            if replicas == 1:
                return made

            # A bucket's last batch of the block is cut to a multiple of the replicas.
            def even(source, target):
                rows = tf.shape(source)[0] // replicas * replicas
                return source[:rows], target[:rows]

            return made.map(even).filter(lambda s, t: tf.shape(s)[0] > 0)

        return batches

    def fill_bucket(source, target):
        """A bucket's last, partly filled batch of a block padded with empty rows to the
        bucket's batch size: one shape a bucket, so XLA compiles each once. Empty rows have
        no target tokens, so they add nothing to the loss, its gradients or the counts."""
        bucket = tf.searchsorted(tf.constant(boundaries), tf.shape(source)[1:], side="right")[0]
        rows = [[0, tf.gather(sizes, bucket) - tf.shape(source)[0]], [0, 0]]
        return tuple(tf.pad(ids, rows, constant_values=PAD_ID) for ids in (source, target))

    def epoch(index, source, first=0):
        epoch_seed = tf.cast(seed, tf.int64) * _EPOCH_SEEDS + tf.cast(index, tf.int64)
        numbered = source.ragged_batch(block_size).enumerate(start=first)
        return numbered.flat_map(block_batches_of(epoch_seed))

    after = pairs_after or pairs.skip
    resumed = epoch(first_epoch, after(first_block * block_size), first_block)
    later = tf.data.Dataset.range(first_epoch + 1, _ENDLESS).flat_map(
        lambda index: epoch(index, pairs)
    )
    # A bounded stream ends by itself: tearing down a live endless pipeline mid-epoch
    # was measured to take 45 s here.
    dataset = resumed.concatenate(later).skip(offset).take(num_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def distributed_train_dataset(strategy, pairs, data_config, seed, start_batch=0, num_batches=-1):
    """(`train_dataset` batches of `pairs` spread over the replicas of `strategy`, the
    `LengthStatistics` of the pairs this process reads).

    `pairs` (`TextPairs`, or `PreparedPairs` of `prepare`: `stream(index, count, skip)` and
    `statistics(index, count)`) are read as
    `data_config.input_shards` streams (default: one per worker process), each batched on
    its own with that share of the batch budget; a global batch is one batch of every
    stream. Each worker reads only its own streams, joins their batches and gives each of
    its replicas an equal part of the rows. The global batches so depend on the number of
    streams alone: with the same `input_shards`, any number of workers (dividing it) and
    replicas train on the same batches. With one stream they are `train_dataset`'s.
    """
    counted = []

    def dataset_fn(context):
        workers = context.num_input_pipelines
        count = data_config.input_shards or workers
        if count % workers:
            raise UserError(
                f"data.input_shards is {count}, which {workers} workers cannot share evenly; "
                "set it to a multiple of the number of workers (or leave it unset: one each)."
            )
        local = context.num_replicas_in_sync // workers
        share = dataclasses.replace(
            data_config,
            batch_size=max(local, data_config.batch_size // count),
            batch_tokens=data_config.batch_tokens and data_config.batch_tokens // count,
        )
        mine = range(
            context.input_pipeline_id * count // workers,
            (context.input_pipeline_id + 1) * count // workers,
        )
        streams = []
        for index in mine:
            statistics = pairs.statistics(index, count)
            counted.append(statistics)
            streams.append(
                train_dataset(
                    pairs.stream(index, count),
                    share,
                    seed + index,
                    start_batch,
                    num_batches,
                    local,
                    statistics,
                    pairs_after=functools.partial(pairs.stream, index, count),
                )
            )
        batches = streams[0] if len(streams) == 1 else tf.data.Dataset.zip(*streams).map(_join)

        def local_parts(source, target):
            parts = [tf.reshape(x, [local, -1, tf.shape(x)[1]]) for x in (source, target)]
            return tf.data.Dataset.from_tensor_slices(tuple(parts))

        return batches.flat_map(local_parts).prefetch(tf.data.AUTOTUNE)

    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    return dataset, merge_statistics(counted)


def _join(*batches):
    """One batch of the rows of several (source, target) batches, padded to the longest."""

    def stack(parts):
        width = tf.reduce_max([tf.shape(part)[1] for part in parts])
        padded = [tf.pad(part, [[0, 0], [0, width - tf.shape(part)[1]]]) for part in parts]
        return tf.concat(padded, axis=0)

    sources, targets = zip(*batches)
    return stack(sources), stack(targets)


def eval_dataset(
    sources, targets, source_tokenizer, target_tokenizer, data_config, batch_size, source_cut=None
):
    """Padded batches of a split in order, for validation loss and accuracy (sources cut
    and pairs over the length limits left out, as in training)."""
    return (
        tokenized_pairs(sources, targets, source_tokenizer, target_tokenizer, source_cut)
        .filter(_within(data_config))
        .padded_batch(batch_size, padding_values=PAD_ID)
        .prefetch(tf.data.AUTOTUNE)
    )
