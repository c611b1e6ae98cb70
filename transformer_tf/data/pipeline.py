"""tf.data pipelines: tokenization in the graph, length filtering, shuffling, batching."""

import tensorflow as tf

from transformer_tf.data.tokenizers import PAD_ID, add_bos_eos, cut_source

_TOKENIZE_CHUNK = 1024  # sentences tokenized per call: ragged ops are cheaper in bulk
_UNCUT = 2**31 - 1


def tokenized_pairs(sources, targets, source_tokenizer, target_tokenizer, source_cut=None):
    """Dataset of (source ids + EOS, BOS + target ids + EOS) int32 vectors; sources cut to
    `source_cut` tokens (the model's `pe_input`) as the translator cuts them."""

    def tokenize(src, tgt):
        src_ids, _ = cut_source(source_tokenizer.tokenize(src), source_cut or _UNCUT)
        tgt_ids = add_bos_eos(target_tokenizer.tokenize(tgt), bos=True)
        return src_ids, tgt_ids

    return (
        tf.data.Dataset.from_tensor_slices((sources, targets))
        .batch(_TOKENIZE_CHUNK)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        # Rows of a ragged batch come out typed as ragged; an identity map makes them
        # the dense vectors they are, which padded_batch needs.
        .map(lambda src, tgt: (src, tgt))
    )


def _within(data_config):
    """Whether a pair keeps to `data_config.length_limits()`."""
    max_source, max_target = data_config.length_limits()
    return lambda s, t: tf.logical_and(tf.size(s) <= max_source, tf.size(t) <= max_target)


def count_length_rules(
    sources, targets, source_tokenizer, target_tokenizer, data_config, source_cut
):
    """(sources longer than `source_cut` tokens, which are cut there; pairs then longer
    than the data config's limits, which training leaves out)."""
    within = _within(data_config)

    def count(totals, pair):
        source, target = pair
        cut = tf.size(source) > source_cut
        kept = within(source[: tf.minimum(tf.size(source), source_cut)], target)
        return totals + tf.cast(tf.stack([cut, tf.logical_not(kept)]), tf.int64)

    pairs = tokenized_pairs(sources, targets, source_tokenizer, target_tokenizer)
    cut, dropped = pairs.reduce(tf.zeros([2], tf.int64), count).numpy().tolist()
    return cut, dropped


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


def train_dataset(
    sources,
    targets,
    source_tokenizer,
    target_tokenizer,
    data_config,
    seed,
    start_batch=0,
    num_batches=-1,
    replicas=1,
    source_cut=None,
):
    """Deterministic stream of padded training batches `start_batch` to
    `start_batch + num_batches` (-1: endless).

    Sources are cut to `source_cut` tokens (the model's `pe_input`); then pairs with more
    tokens than `data_config.length_limits()` are dropped; the rest are batched with pairs
    of similar length, `batch_size` sentences or `batch_tokens` tokens (padding counted) at
    a time, a multiple of `replicas`. The order depends only on `seed`, so `start_batch`
    resumes exactly where a run stopped.
    Yields (source [batch, src_len], target [batch, tgt_len]) int32, padded with 0.
    """
    boundaries = length_buckets(max(data_config.length_limits()))
    dataset = (
        tokenized_pairs(sources, targets, source_tokenizer, target_tokenizer, source_cut)
        .filter(_within(data_config))
        .cache()
        .shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        # Batch sentences of similar length together: padding is wasted compute.
        .bucket_by_sequence_length(
            lambda s, t: tf.maximum(tf.size(s), tf.size(t)),
            bucket_boundaries=boundaries,
            bucket_batch_sizes=bucket_batch_sizes(boundaries, data_config, replicas),
            padding_values=(PAD_ID, PAD_ID),
            # Fixed shapes (boundary - 1) let XLA compile once per bucket.
            pad_to_bucket_boundary=data_config.pad_to_buckets,
        )
    )
    # A bounded stream ends by itself: tearing down a live endless pipeline mid-epoch
    # was measured to take 45 s here.
    return dataset.skip(start_batch).take(num_batches).prefetch(tf.data.AUTOTUNE)


def distributed_train_dataset(
    strategy,
    sources,
    targets,
    source_tokenizer,
    target_tokenizer,
    data_config,
    seed,
    start_batch=0,
    num_batches=-1,
    source_cut=None,
):
    """`train_dataset`'s global batches split over the replicas of `strategy`.

    Every worker builds the same global batches and keeps its own rows of each: worker w
    of W takes the w-th of W equal slices and gives each of its replicas an equal part.
    Together the replicas see exactly the global batch that one device would, so the
    number of workers and replicas does not change the training.
    """

    def dataset_fn(context):
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def local_parts(source, target):
            parts = [
                tf.reshape(x, [replicas, -1, tf.shape(x)[1]])[first : first + local]
                for x in (source, target)
            ]
            return tf.data.Dataset.from_tensor_slices(tuple(parts))

        batches = train_dataset(
            sources,
            targets,
            source_tokenizer,
            target_tokenizer,
            data_config,
            seed,
            start_batch,
            num_batches,
            replicas,
            source_cut,
        )
        return batches.flat_map(local_parts).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


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
