"""Start-up probes that choose, on the machine at hand, what `train.precision: auto` and
`train.jit_compile: auto` leave open.

Which is faster depends on the CPU: bfloat16 matrix products ran at half the float32 rate on
one AVX-512 Intel machine of this project, were converted on an AVX2-only AMD one and ran at
1.85 times float32 on an AVX-512-bf16 AMD one; XLA won 11 % on one machine and lost 3 % on
another. So the run measures, once, when it starts, and records the choice in its resolved
config (`config.yaml`): a resumed run keeps it.

- both, with bucketed batch shapes (`data.pad_to_buckets`): the two interact (on one
  Intel machine bfloat16 alone and XLA alone each won, and bfloat16 made XLA's own gain
  look too small), so the real compiled train step of a scratch copy of the model (same
  settings, its own weights and optimizer) is timed on batches of the config's shapes in
  all four combinations, and the fastest taken.
- precision alone: the matrix products of one batch of the model (query/key/value/output
  projections, feed-forward, output layer; forward shapes), float32 against the reduced
  precision (bfloat16; float16 on a GPU), under a second.
- XLA alone: that train step with and without XLA, in the given precision; only when the
  batch shapes are bucketed, since XLA compiles once per shape.

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


def reduced_precision():
    """The precision `auto` weighs against float32 here: float16 on a GPU, else bfloat16."""
    return "float16" if tf.config.list_physical_devices("GPU") else "bfloat16"


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
    reduced = reduced_precision()
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


def step_seconds(make_step, precision, jit_compile, batches, updates=5):
    """Seconds for one pass over `batches` of the train step `make_step(precision,
    jit_compile)` returns (with its own scratch model): the fastest of `updates` passes,
    after one that compiles each shape."""
    step = make_step(precision, jit_compile)

    def run():
        for source, target in batches:
            step.update(source, target)["loss_sum"].numpy()

    return _best_seconds(run, repeats=updates)


def choose_jit_compile(make_step, batches, precision):
    """(whether to compile the train step of `make_step(precision, jit_compile)` with XLA,
    measured speed-up or None); `batches` None: the shapes are not bucketed."""
    if batches is None:
        log.info(
            "train.jit_compile auto: off (batch shapes are not bucketed, so XLA would "
            "compile again for most batches; data.pad_to_buckets: true lets it choose)"
        )
        return False, None
    speedup = step_seconds(make_step, precision, False, batches) / step_seconds(
        make_step, precision, True, batches
    )
    choice = speedup >= MARGIN
    log.info(
        "train.jit_compile auto: %s (the train step ran %.2fx as fast with XLA; %.2fx needed)",
        "on" if choice else "off",
        speedup,
        MARGIN,
    )
    return choice, speedup


def choose_precision_and_jit_compile(make_step, batches):
    """((precision, jit_compile), {each combination: its speed-up over float32 without
    XLA}): the fastest combination of the train step `make_step(precision, jit_compile)`
    on `batches`, taken when it is `MARGIN` times as fast as float32 without XLA."""
    combinations = [(p, j) for p in ("float32", reduced_precision()) for j in (False, True)]
    seconds = {c: step_seconds(make_step, *c, batches) for c in combinations}
    speedups = {c: seconds[combinations[0]] / s for c, s in seconds.items()}
    fastest = max(speedups, key=speedups.get)
    choice = fastest if speedups[fastest] >= MARGIN else combinations[0]
    log.info(
        "train.precision and train.jit_compile auto: %s, XLA %s (the train step ran %s; "
        "%.2fx needed)",
        choice[0],
        "on" if choice[1] else "off",
        ", ".join(f"{p}{' with XLA' if j else ''} {speedups[p, j]:.2f}x" for p, j in combinations),
        MARGIN,
    )
    return choice, speedups


def choose(model_config, tokens, make_step, batches, precision="auto", jit_compile="auto"):
    """{key: choice} for those of `precision` and `jit_compile` given as "auto", measured
    here: `tokens` per batch (the precision probe's products), `make_step(precision,
    jit_compile)` a train step with a scratch model, `batches` of the run's bucketed
    shapes (None when they are not bucketed)."""
    chosen = {}
    if precision == "auto" and jit_compile == "auto" and batches is not None:
        (chosen["precision"], chosen["jit_compile"]), _ = choose_precision_and_jit_compile(
            make_step, batches
        )
        return chosen
    if precision == "auto":
        precision, _ = choose_precision(model_config, tokens)
        chosen["precision"] = precision
    if jit_compile == "auto":
        chosen["jit_compile"], _ = choose_jit_compile(make_step, batches, precision)
    return chosen


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
