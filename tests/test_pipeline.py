"""The training pipeline: token-budget batches and the length filter."""

import tensorflow as tf

from transformer_tf.config import config_from_dict
from transformer_tf.data.pipeline import (
    count_length_rules,
    length_buckets,
    length_statistics,
    train_dataset,
    training_pairs,
)


def test_token_budget_batches_and_length_filter(corpus, tokenizers):
    english, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]  # German pieces on both sides: only lengths matter
    config = config_from_dict(
        {"data": {"batch_tokens": 200, "max_length": 24, "pad_to_buckets": True}}
    ).data
    dataset = training_pairs(german, german, tokenizer, tokenizer)
    _, too_long = count_length_rules(length_statistics(dataset), config)
    lengths = tokenizer.tokenize(tf.constant(german)).row_lengths().numpy() + 2  # BOS/EOS
    assert too_long == int((lengths > config.max_length).sum()) > 0

    shapes, pairs, batches = set(), 0, 150
    for src, tgt in train_dataset(dataset, config, seed=1, num_batches=batches):
        assert int(tf.size(tgt)) <= config.batch_tokens and int(tf.size(src)) <= 200
        shapes.add(int(tgt.shape[1]))
        pairs += int(tgt.shape[0])
    # Exactly the buckets that hold pairs, each padded to its bound.
    bounds = length_buckets(config.max_length)
    used = {next(b - 1 for b in bounds if n < b) for n in lengths if n <= config.max_length}
    assert shapes == used, (shapes, used)
    assert pairs > batches * 5  # batches are filled by tokens, not one sentence each


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
    dataset = training_pairs(german, german, tokenizer, tokenizer, source_cut)
    cut, dropped = count_length_rules(length_statistics(dataset), config)
    assert cut == int((lengths + 1 > source_cut).sum()) > 0  # source ids end in EOS
    assert dropped == int((lengths + 2 > max_target).sum()) > 0  # target: BOS and EOS
    pairs = 0
    for src, tgt in train_dataset(dataset, config, seed=1, num_batches=40):
        assert src.shape[1] <= source_cut and tgt.shape[1] <= max_target
        pairs += int(src.shape[0])
    assert pairs == 40 * 16


def test_training_tokenizes_its_split_once(corpus, tokenizers):
    """The length count at the start and every epoch read one tokenization of the split."""
    _, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    sentences = tf.Variable(0, dtype=tf.int64)

    class Counting:
        def tokenize(self, strings):
            sentences.assign_add(tf.size(strings, tf.int64))
            return tokenizer.tokenize(strings)

    config = config_from_dict({"data": {"batch_size": 64}}).data
    pairs = training_pairs(german, german, Counting(), Counting())
    length_statistics(pairs)
    assert int(sentences.numpy()) == 2 * len(german)  # source side and target side
    epochs = 3
    for _ in train_dataset(pairs, config, seed=1, num_batches=epochs * len(german) // 64):
        pass
    assert int(sentences.numpy()) == 2 * len(german)
