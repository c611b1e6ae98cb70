"""Start-up probes that choose, on the machine at hand, what `train.precision: auto` and
`train.jit_compile: auto` leave open.

Which is faster depends on the CPU: bfloat16 matrix products ran at half the float32 rate on
one AVX-512 Intel machine of this project, were converted on an AVX2-only AMD one and ran at
1.85 times float32 on an AVX-512-bf16 AMD one; XLA won 11 % on one machine and lost 3 % on
another. So the run measures, once, when it starts, and records the choice in its resolved
config (`config.yaml`): a resumed run keeps it.

- precision: the matrix products of one batch of the model (query/key/value/output
  projections, feed-forward, output layer; forward shapes), float32 against the reduced
  precision (bfloat16; float16 on a GPU), under a second.
- XLA: the real compiled train step of a scratch copy of the model (same settings, its
  own weights and optimizer) on batches of the config's shapes, with and without XLA;
  only when the batch shapes are bucketed (`data.pad_to_buckets`), since XLA compiles once
  per shape.

A faster choice is taken only when it wins by `MARGIN`: a few percent is within what a busy
machine varies by, and the default (float32, no XLA) is the one every result here was
measured with.
"""

import dataclasses
import logging
import time

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

MARGIN = 1.15  # the other choice must be at least this many times as fast
# What `auto` stands for where nothing is measured (several replicas, benchmarks).
PLAIN = {"precision": "float32", "jit_compile": False}


def plain_settings(train_config):
    """`train_config` with each `auto` replaced by its `PLAIN` value."""
    auto = {key: value for key, value in PLAIN.items() if getattr(train_config, key) == "auto"}
    return dataclasses.replace(train_config, **auto)


def _best_seconds(function, repeats=5):
    """The fastest of `repeats` timed calls of `function` (after one untimed call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_shapes(model_config, tokens):
    """(rows, inner, columns) of the matrix products of one batch of `tokens` positions:
    the attention projections, the feed-forward and the output layer."""
    d, dff, vocab = model_config.d_model, model_config.dff, model_config.target_vocab_size
    return [(tokens, d, d), (tokens, d, dff), (tokens, dff, d), (tokens, d, vocab)]


def precision_speedup(model_config, tokens, reduced="bfloat16"):
    """float32 time / `reduced` time of the matrix products of `matmul_shapes`."""
    rng = np.random.default_rng(0)

    def products(dtype):
        pairs = [
            (
                tf.constant(rng.standard_normal((m, k)), dtype),
                tf.constant(rng.standard_normal((k, n)), dtype),
            )
            for m, k, n in matmul_shapes(model_config, tokens)
        ]
        run = tf.function(lambda: [tf.matmul(a, b) for a, b in pairs])
        return lambda: [product.numpy() for product in run()]

    return _best_seconds(products(tf.float32)) / _best_seconds(products(reduced))


def choose_precision(model_config, tokens):
    """("float32" or the reduced precision, measured speed-up), the reduced one taken
    when its products run `MARGIN` times as fast."""
    reduced = "float16" if tf.config.list_physical_devices("GPU") else "bfloat16"
    speedup = precision_speedup(model_config, tokens, reduced)
    choice = reduced if speedup >= MARGIN else "float32"
    log.info(
        "train.precision auto: %s (%s matrix products of this model's shapes ran %.2fx as "
        "fast as float32; %.2fx needed)",
        choice,
        reduced,
        speedup,
        MARGIN,
    )
    return choice, speedup


def xla_speedup(make_step, batches, updates=5):
    """Time per update without XLA / with XLA, of the steps `make_step(jit_compile)`
    returns (each with its own scratch model), over `batches` (each shape compiled
    before timing)."""

    def seconds(jit_compile):
        step = make_step(jit_compile)

        def run():
            for source, target in batches:
                step.update(source, target)["loss_sum"].numpy()

        return _best_seconds(run, repeats=updates)

    return seconds(False) / seconds(True)


def choose_jit_compile(make_step, batches, bucketed):
    """(whether to compile the train step with XLA, measured speed-up or None)."""
    if not bucketed:
        log.info(
            "train.jit_compile auto: off (batch shapes are not bucketed, so XLA would "
            "compile again for most batches; data.pad_to_buckets: true lets it choose)"
        )
        return False, None
    speedup = xla_speedup(make_step, batches)
    choice = speedup >= MARGIN
    log.info(
        "train.jit_compile auto: %s (the train step ran %.2fx as fast with XLA; %.2fx needed)",
        "on" if choice else "off",
        speedup,
        MARGIN,
    )
    return choice, speedup


def probe_batches(model_config, data_config, lengths=(15, 31)):
    """Random batches of the shapes bucketed training makes for pairs of `lengths` tokens
    (the longest of each bucket, as `data.pad_to_buckets` pads them)."""
    from transformer_tf.data.pipeline import bucket_batch_sizes, length_buckets

    boundaries = length_buckets(max(data_config.length_limits()))
    sizes = bucket_batch_sizes(boundaries, data_config)
    rng = np.random.default_rng(0)
    batches = []
    for length in lengths:
        if length >= boundaries[-1]:
            continue
        size = sizes[int(np.searchsorted(boundaries, length, side="right"))]
        source = rng.integers(4, model_config.input_vocab_size, (size, length))
        target = rng.integers(4, model_config.target_vocab_size, (size, length + 1))
        batches.append((tf.constant(source, tf.int32), tf.constant(target, tf.int32)))
    return batches
