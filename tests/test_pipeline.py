"""The training pipeline: token-budget batches and the length filter."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.config import config_from_dict
from transformer_tf.data.pipeline import (
    TextPairs,
    batches_per_epoch,
    count_length_rules,
    distributed_train_dataset,
    length_buckets,
    length_statistics,
    train_dataset,
    training_pairs,
)

from conftest import same_text


def test_token_budget_batches_and_length_filter(corpus, tokenizers):
    english, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]  # German pieces on both sides: only lengths matter
    config = config_from_dict(
        {"data": {"batch_tokens": 200, "max_length": 24, "pad_to_buckets": True}}
    ).data
    dataset = training_pairs(same_text(german), tokenizer, tokenizer)
    _, too_long = count_length_rules(length_statistics(dataset), config)
    lengths = tokenizer.tokenize(tf.constant(german)).row_lengths().numpy() + 2  # BOS/EOS
    assert too_long == int((lengths > config.max_length).sum()) > 0

    statistics = length_statistics(dataset)
    epoch = batches_per_epoch(statistics, config)
    shapes, pairs = set(), 0
    for src, tgt in train_dataset(dataset, config, seed=1, num_batches=epoch):
        assert int(tf.size(tgt)) <= config.batch_tokens and int(tf.size(src)) <= 200
        assert src.shape == tgt.shape
        shapes.add(tuple(tgt.shape))
        pairs += int(tf.reduce_sum(tf.cast(tf.reduce_any(tgt != 0, axis=1), tf.int32)))
    # Exactly the buckets that hold pairs, each one shape: its bound, its batch size (a
    # bucket's last batch gets empty rows), so XLA compiles once a bucket.
    bounds = length_buckets(config.max_length)
    used = {next(b - 1 for b in bounds if n < b) for n in lengths if n <= config.max_length}
    assert {length for _, length in shapes} == used, (shapes, used)
    assert shapes == {(config.batch_tokens // length, length) for length in used}
    assert pairs == len(german) - too_long  # one epoch: every pair within the limits, once
    assert pairs > epoch * 5  # batches are filled by tokens, not one sentence each


def test_separate_limits_and_sources_cut_where_the_model_stops_reading(corpus, tokenizers):
    """Long sources are cut at `source_cut` (pe_input), not dropped; the side limits then
    drop what is still too long."""
    english, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    lengths = tokenizer.tokenize(tf.constant(german)).row_lengths().numpy()
    source_cut, max_target = 12, 20
    config = config_from_dict(
        {"data": {"max_source_length": 64, "max_target_length": max_target, "batch_size": 16}}
    ).data
    dataset = training_pairs(same_text(german), tokenizer, tokenizer, source_cut)
    statistics = length_statistics(dataset)
    cut, dropped = count_length_rules(statistics, config)
    assert cut == int((lengths + 1 > source_cut).sum()) > 0  # source ids end in EOS
    assert dropped == int((lengths + 2 > max_target).sum()) > 0  # target: BOS and EOS
    pairs, epoch = 0, batches_per_epoch(statistics, config)
    for src, tgt in train_dataset(dataset, config, seed=1, num_batches=epoch):
        assert src.shape[1] <= source_cut and tgt.shape[1] <= max_target
        assert src.shape[0] <= 16
        pairs += int(src.shape[0])
    assert pairs == len(german) - dropped  # one epoch: every pair within the limits, once


def test_training_streams_its_split_tokenizing_each_epoch_as_it_reads_it(corpus, tokenizers):
    """Nothing of the split is kept: the length count at the start is one pass, and each
    epoch reads and tokenizes the split once more, no more."""
    _, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    sentences = tf.Variable(0, dtype=tf.int64)

    class Counting:
        def tokenize(self, strings):
            sentences.assign_add(tf.size(strings, tf.int64))
            return tokenizer.tokenize(strings)

    config = config_from_dict({"data": {"batch_size": 64}}).data
    pairs = training_pairs(same_text(german), Counting(), Counting())
    statistics = length_statistics(pairs)
    assert int(sentences.numpy()) == 2 * len(german)  # source side and target side
    per_epoch = batches_per_epoch(statistics, config)
    for _ in train_dataset(pairs, config, seed=1, num_batches=3 * per_epoch):
        pass
    # The count, three epochs, and perhaps the next one, read ahead (300 pairs: one chunk).
    assert int(sentences.numpy()) // (2 * len(german)) in (4, 5)


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_resumed_stream_starts_at_its_block_with_the_same_batches(corpus, tokenizers, replicas):
    """Batch k of a stream from the start is batch 0 of a stream started at k (so
    `block_batches` counts every block's batches exactly), and a stream started 50 epochs
    in, at an epoch's last batch, reads only that batch's block: the pairs before it are
    skipped at their source, whatever the step."""
    _, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    block = 64  # 300 pairs: blocks of 64, 64, 64, 64 and 44
    data = {"batch_tokens": 300, "max_length": 24, "shuffle_buffer": block}
    config = config_from_dict({"data": data}).data
    pairs = training_pairs(same_text(german), tokenizer, tokenizer)
    statistics = length_statistics(pairs)
    per_epoch = batches_per_epoch(statistics, config, replicas)
    read = tf.Variable(0, dtype=tf.int64)

    def counted(source, target, cut):
        read.assign_add(1)
        return source, target, cut

    def after(skip):  # the pairs after the first `skip`: those are never read
        return training_pairs(same_text(german[skip:]), tokenizer, tokenizer).map(counted)

    def stream(start, count):
        batches = train_dataset(pairs, config, 5, start, count, replicas, statistics, after)
        return [(s.numpy(), t.numpy()) for s, t in batches]

    whole = stream(0, 3 * per_epoch)
    assert all(len(s) % replicas == 0 for s, _ in whole)
    for start in (7, per_epoch - 1, per_epoch, 2 * per_epoch + 3):
        for (s, t), (s_resumed, t_resumed) in zip(whole[start:], stream(start, 20), strict=False):
            np.testing.assert_array_equal(s, s_resumed)
            np.testing.assert_array_equal(t, t_resumed)

    read.assign(0)
    stream(50 * per_epoch + per_epoch - 1, 1)
    assert 0 < int(read.numpy()) <= len(german) % block


def test_two_input_streams_make_each_global_batch_of_one_batch_of_each(corpus, tokenizers):
    """With `data.input_shards: 2` a global batch is a batch of the even pairs and one of
    the odd pairs, each made with half the token budget, joined (padded to the longer)."""
    _, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    config = config_from_dict({"data": {"batch_tokens": 300, "max_length": 24}}).data
    config = dataclasses.replace(config, input_shards=2)
    pairs = TextPairs(same_text(german), tokenizer, tokenizer)
    dataset, statistics = distributed_train_dataset(
        tf.distribute.get_strategy(), pairs, config, seed=5, num_batches=6
    )
    whole = length_statistics(training_pairs(same_text(german), tokenizer, tokenizer))
    assert statistics[:3] == whole[:3]  # pairs, cut, lengths: the two streams together
    half = dataclasses.replace(config, batch_tokens=150)
    streams = [train_dataset(pairs.stream(k, 2), half, 5 + k, num_batches=6) for k in (0, 1)]

    def rows(*batches):
        return [list(row[row > 0]) for batch in batches for row in batch.numpy()]

    joined = 0
    for (source, target), (source_0, target_0), (source_1, target_1) in zip(dataset, *streams):
        assert rows(source) == rows(source_0, source_1)
        assert rows(target) == rows(target_0, target_1)
        joined += 1
    assert joined == 6
