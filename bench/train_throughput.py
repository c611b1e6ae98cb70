"""Training throughput against peers, on the same Multi30K batches, with the matmul peak.

    python bench/train_throughput.py --data ../shared/data/multi30k [--sizes small,base]
        [--window 30] [--systems ...]   (needs pip install -e ".[bench]")

One run builds the batches once (Multi30K en->de train, SentencePiece 8,000 per side,
64 sentences per batch, length-bucketed and padded to the bucket so that XLA sees a fixed
set of shapes) and times, one after the other, each system on them: after a warm-up that
shows it every batch shape, three windows of `--window` seconds, median reported; tokens
are the real (non-padding) target tokens. Systems:

- transformer_tf: this package's compiled train step (`TrainStep`), float32, bfloat16,
  each with XLA (`train.jit_compile`), and `auto`: what `train.precision: auto` and
  `train.jit_compile: auto` choose here (the package's start-up probes; the choice printed);
- pytorch: `torch.nn.Transformer` of the same dimensions, eager, the same loss (label
  smoothing 0.1, summed over real tokens / their count);
- keras_hub: KerasHub's `TransformerEncoder` / `TransformerDecoder` (post-norm) of the same
  dimensions with sinusoidal positions, trained by a compiled custom step like this
  package's;
- the `tf.matmul` peak of float32 and bfloat16 on this machine.

All systems train with the package's inverse-square-root schedule (`TRAIN`: peak 0.003 after
100 warm-up updates), Adam (0.9, 0.98, 1e-9), label smoothing 0.1 and clipping at norm 1.0.
`--loss-curve-steps N` also trains each system N updates on N distinct batches from seed 1 and
prints the mean training loss of every 100: how fast each learns, not only how fast it runs
(the test of an initialization or a numerical change: bfloat16 against float32).

Model FLOP rate = 6 x matmul weights x tokens/s (`common.matmul_weights`). The final table
gives, per size, each system's tokens/s, its ratio to the best peer (PyTorch eager, KerasHub)
and its FLOP rate as a fraction of the matmul peak of its own precision. The tracing count
of this package's update after all windows is printed too (one trace serves every batch
shape).
"""

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import tensorflow as tf

from transformer_tf.config import config_from_dict, resolve_model_config
from transformer_tf.data.pipeline import train_dataset, training_pairs
from transformer_tf.model import build_model
from transformer_tf.model.layers import positional_encoding
from transformer_tf.training import probes
from transformer_tf.training.losses import masked_loss_sum
from transformer_tf.training.optimizers import make_optimizer
from transformer_tf.training.schedules import make_schedule
from transformer_tf.training.step import TrainStep

from common import SIZES, matmul_weights, multi30k, multi30k_tokenizers

SYSTEMS = [
    "transformer_tf float32",
    "transformer_tf bfloat16",
    "transformer_tf float32 XLA",
    "transformer_tf bfloat16 XLA",
    "transformer_tf auto",
    "pytorch eager",
    "keras_hub",
]
PEERS = ("pytorch eager", "keras_hub")  # the systems this package is measured against
BATCH_SENTENCES = 64
LABEL_SMOOTHING = 0.1
# Every system trains with this (the package's schedule, fed to PyTorch and KerasHub too): a
# fast small-model rate, at which the loss curves show how quickly each system learns.
TRAIN = {
    "label_smoothing": LABEL_SMOOTHING,
    "schedule": "inverse_sqrt",
    "learning_rate": 0.003,
    "warmup_steps": 100,
    "clip_norm": 1.0,
}


def make_batches(data_dir, count):
    """`count` (source, target) int32 numpy batches in training order, the model config
    resolved for their vocabularies, and the data config."""
    config = config_from_dict(
        {"data": {"batch_size": BATCH_SENTENCES, "pad_to_buckets": True, "max_length": 64}}
    )
    tf.keras.utils.set_random_seed(config.train.seed)
    sources, targets = multi30k(data_dir, "train")
    tokenizers = multi30k_tokenizers(sources, targets)
    dataset = train_dataset(
        training_pairs(tf.data.Dataset.from_tensor_slices((sources, targets)), *tokenizers),
        config.data,
        seed=1,
        num_batches=count,
    )
    batches = [(s.numpy(), t.numpy()) for s, t in dataset]
    return batches, [t.vocab_size for t in tokenizers]


def real_target_tokens(target):
    return int(np.count_nonzero(target[:, 1:]))


def time_windows(step, batches, window, windows=3):
    """Tokens/s of `step(source, target)` in `windows` windows of `window` seconds, cycling
    through `batches`."""
    rates, index = [], 0
    for _ in range(windows):
        tokens, start = 0, time.perf_counter()
        while time.perf_counter() - start < window:
            source, target = batches[index % len(batches)]
            step(source, target)
            tokens += real_target_tokens(target)
            index += 1
        rates.append(tokens / (time.perf_counter() - start))
    return rates


def warm_up(step, batches):
    """One batch of every shape (each shape traced or compiled once), then a few more."""
    seen = {}
    for source, target in batches:
        seen.setdefault((source.shape, target.shape), (source, target))
    for source, target in [*seen.values(), *batches[:5]]:
        step(source, target)
    return len(seen)


# -- the systems ------------------------------------------------------------------------


def package_train_step(model_config, precision="float32", jit=False):
    """This package's `TrainStep` for a fresh model (seed TensorFlow first)."""
    config = config_from_dict(
        {
            "model": model_config.__dict__,
            "train": {**TRAIN, "precision": precision, "jit_compile": jit},
        }
    )
    model = build_model(config.model, precision)
    optimizer = make_optimizer(config.train, config.model.d_model)
    optimizer.build(model.trainable_variables)
    return TrainStep(model, optimizer, config.train)


def train_config():
    """`TRAIN` as the package's train section: every system's optimizer settings."""
    return config_from_dict({"train": TRAIN}).train


def loss_curve(step, batches, steps, every=100):
    """Mean training loss of each `every` updates of `step` over the first `steps` batches."""
    losses = [step(*batches[i]) for i in range(steps)]
    return [statistics.mean(losses[i : i + every]) for i in range(0, steps, every)]


# Each system's `step(source, target)` makes one update and returns its label-smoothed loss
# per real target token (a Python float, so the update has finished).


def transformer_tf_step(model_config, precision, jit):
    train_step = package_train_step(model_config, precision, jit)

    def step(source, target):
        metrics = train_step.update(source, target)
        return float(metrics["loss_sum"] / metrics["tokens"])

    step.traces = train_step.update.experimental_get_tracing_count
    step.precision = precision
    return step


def keras_hub_step(model_config):
    import keras_hub

    m = model_config

    class KerasHubTransformer(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.source_embedding = tf.keras.layers.Embedding(m.input_vocab_size, m.d_model)
            self.target_embedding = tf.keras.layers.Embedding(m.target_vocab_size, m.d_model)
            self.positions = keras_hub.layers.SinePositionEncoding()
            self.encoders = [
                keras_hub.layers.TransformerEncoder(m.dff, m.num_heads, dropout=m.rate)
                for _ in range(m.num_layers)
            ]
            self.decoders = [
                keras_hub.layers.TransformerDecoder(m.dff, m.num_heads, dropout=m.rate)
                for _ in range(m.num_layers)
            ]
            self.dropout = tf.keras.layers.Dropout(m.rate)
            self.final_layer = tf.keras.layers.Dense(m.target_vocab_size)

        def embed(self, embedding, ids, training):
            x = embedding(ids) * math.sqrt(m.d_model)
            return self.dropout(x + self.positions(x), training=training)

        def call(self, source, target, training=False):
            source_mask, target_mask = source != 0, target != 0
            x = self.embed(self.source_embedding, source, training)
            for encoder in self.encoders:
                x = encoder(x, padding_mask=source_mask, training=training)
            y = self.embed(self.target_embedding, target, training)
            for decoder in self.decoders:
                y = decoder(
                    y,
                    x,
                    decoder_padding_mask=target_mask,
                    encoder_padding_mask=source_mask,
                    training=training,
                )
            return self.final_layer(y)

    model = KerasHubTransformer()
    train = train_config()
    optimizer = make_optimizer(train, m.d_model)
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def update(source, target):
        with tf.GradientTape() as tape:
            logits = model(source, target[:, :-1], training=True)
            loss_sum, tokens = masked_loss_sum(target[:, 1:], logits, LABEL_SMOOTHING)
            loss = loss_sum / tokens
        gradients = tape.gradient(loss, model.trainable_variables)
        gradients, _ = tf.clip_by_global_norm(gradients, train.clip_norm)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return lambda source, target: float(update(source, target))


def pytorch_step(model_config):
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # every core, as TensorFlow uses
    torch.manual_seed(1)
    m = model_config
    table = torch.from_numpy(positional_encoding(m.pe_target, m.d_model).numpy()[0])

    class TorchTransformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.source_embedding = torch.nn.Embedding(m.input_vocab_size, m.d_model)
            self.target_embedding = torch.nn.Embedding(m.target_vocab_size, m.d_model)
            self.register_buffer("positions", table)
            self.dropout = torch.nn.Dropout(m.rate)
            self.core = torch.nn.Transformer(
                m.d_model, m.num_heads, m.num_layers, m.num_layers, m.dff, m.rate, batch_first=True
            )  # post-norm, ReLU: the paper's layers
            self.final_layer = torch.nn.Linear(m.d_model, m.target_vocab_size)

        def embed(self, embedding, ids):
            x = embedding(ids) * math.sqrt(m.d_model)
            return self.dropout(x + self.positions[: ids.shape[1]])

        def forward(self, source, target):
            length = target.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool).triu(1)  # True: masked
            out = self.core(
                self.embed(self.source_embedding, source),
                self.embed(self.target_embedding, target),
                tgt_mask=causal,
                src_key_padding_mask=source == 0,
                tgt_key_padding_mask=target == 0,
                memory_key_padding_mask=source == 0,
                tgt_is_causal=True,
            )
            return self.final_layer(out)

    model = TorchTransformer().train()
    train = train_config()
    optimizer = torch.optim.Adam(
        model.parameters(),
        1.0,
        eps=train.adam_epsilon,
        betas=(train.adam_beta_1, train.adam_beta_2),
    )
    rate = make_schedule(train, m.d_model)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: float(rate(i)))

    def step(source, target):
        source = torch.from_numpy(source.astype(np.int64))
        target = torch.from_numpy(target.astype(np.int64))
        labels = target[:, 1:]
        logits = model(source, target[:, :-1])
        loss_sum = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=0,
            label_smoothing=LABEL_SMOOTHING,
            reduction="sum",
        )
        tokens = (labels != 0).sum()
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.clip_norm)
        optimizer.step()
        schedule.step()
        return float(loss_sum.detach() / tokens)

    return step


def matmul_peak(dtype, sizes=(1024, 2048, 4096), window=5.0):
    """GFLOP/s of the fastest of square matmul sizes `sizes` (each the median of three
    windows): the best rate this machine's `tf.matmul` reaches in `dtype`."""
    return max(_matmul_rate(dtype, size, window) for size in sizes)


def _matmul_rate(dtype, size, window):
    """GFLOP/s of chained [size, size] matmuls (median of three windows)."""
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a / math.sqrt(size), dtype)

    @tf.function
    def chain(x):
        for _ in range(4):
            x = tf.matmul(x, a)
        return x

    chain(a).numpy()
    rates = []
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < window:
            chain(a).numpy()
            count += 4
        rates.append(2 * size**3 * count / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def stage_times(model_config, batches, repeats=10):
    """Where this package's float32 update spends its time, on the most common batch shape:
    milliseconds of the forward pass, forward + backward, the whole update (the optimizer
    is the difference), and the output layer with the loss alone (forward + backward)."""
    train_step = package_train_step(model_config)
    model = train_step.model
    shapes = [(s.shape, t.shape) for s, t in batches]
    common = max(set(shapes), key=shapes.count)
    source, target = next(b for b, shape in zip(batches, shapes) if shape == common)
    labels = target[:, 1:]

    @tf.function
    def forward(source, target):
        return tf.reduce_sum(model(source, target[:, :-1], training=True)[0])

    @tf.function
    def backward(source, target):
        with tf.GradientTape() as tape:
            logits = model(source, target[:, :-1], training=True)[0]
            loss = masked_loss_sum(target[:, 1:], logits, LABEL_SMOOTHING)[0]
        gradients = tape.gradient(loss, model.trainable_variables)
        # Dense, as the update makes them; one number out, so nothing large is copied.
        return tf.linalg.global_norm([tf.convert_to_tensor(g) for g in gradients])

    hidden = tf.random.normal([*labels.shape, model_config.d_model])
    final_layer = model.final_layer

    @tf.function
    def output_layer(hidden):
        with tf.GradientTape() as tape:
            tape.watch(hidden)
            loss = masked_loss_sum(labels, final_layer(hidden), LABEL_SMOOTHING)[0]
        return tf.linalg.global_norm(
            tape.gradient(loss, [hidden, *final_layer.trainable_variables])
        )

    def milliseconds(function, *args):
        function(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = function(*args)
            (result["tokens"] if isinstance(result, dict) else result).numpy()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    return common, {
        "forward": milliseconds(forward, source, target),
        "forward + backward": milliseconds(backward, source, target),
        "whole update": milliseconds(train_step.update, source, target),
        "output layer + loss, forward + backward": milliseconds(output_layer, hidden),
    }


def auto_choices(model_config, batches):
    """(precision, jit_compile) that `train.precision: auto` and `train.jit_compile: auto`
    choose here: the package's start-up probes, on batches of this benchmark's shapes."""
    shapes = {}
    for source, target in batches:
        shapes.setdefault(source.shape[1], (tf.constant(source), tf.constant(target)))
    chosen = probes.choose(
        model_config,
        int(np.mean([s.size for s, _ in batches])),
        lambda precision, jit_compile: package_train_step(model_config, precision, jit_compile),
        [shapes[length] for length in sorted(shapes)[:2]],
    )
    return chosen["precision"], chosen["jit_compile"]


def make_step(system, model_config, batches):
    if system == "transformer_tf auto":
        precision, jit = auto_choices(model_config, batches)
        print(f"  auto chose {precision}, XLA {'on' if jit else 'off'}", file=sys.stderr)
        return transformer_tf_step(model_config, precision, jit)
    if system.startswith("transformer_tf"):
        precision = "bfloat16" if "bfloat16" in system else "float32"
        return transformer_tf_step(model_config, precision, jit="XLA" in system)
    if system == "pytorch eager":
        return pytorch_step(model_config)
    if system == "keras_hub":
        return keras_hub_step(model_config)
    raise SystemExit(f"unknown system '{system}'; choose from {', '.join(SYSTEMS)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/multi30k")
    parser.add_argument("--sizes", default="small,base", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--batches", type=int, default=200, help="distinct batches cycled")
    parser.add_argument(
        "--loss-curve-steps",
        type=int,
        default=0,
        help="also train each system this many updates on the same distinct "
        "batches from seed 1 and print its loss per 100 updates",
    )
    parser.add_argument("--loss-curve-size", default="small")
    args = parser.parse_args(argv)
    systems = args.systems.split(",")
    batches, (source_vocab, target_vocab) = make_batches(
        args.data, max(args.batches, args.loss_curve_steps)
    )
    print(
        f"{len(batches)} batches of {BATCH_SENTENCES} sentences, "
        f"{statistics.mean(real_target_tokens(t) for _, t in batches):,.0f} real target "
        f"tokens each on average; 3 windows of {args.window:.0f} s per system",
        file=sys.stderr,
    )
    peaks = {"float32": matmul_peak(tf.float32), "bfloat16": matmul_peak(tf.bfloat16)}
    print(
        f"tf.matmul peak: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 "
        f"{peaks['bfloat16']:.0f} GFLOP/s",
        file=sys.stderr,
    )

    results, precisions = {}, {}
    sizes = [size for size in args.sizes.split(",") if size]  # --sizes "": the peaks only
    for size in sizes:
        model_config = resolve_model_config(
            config_from_dict({"model": SIZES[size]}).model, source_vocab, target_vocab
        )
        weights = matmul_weights(model_config)
        for system in systems:
            tf.keras.utils.set_random_seed(1)
            step = make_step(system, model_config, batches)
            started = time.perf_counter()
            shapes = warm_up(step, batches)
            warm = time.perf_counter() - started
            rates = time_windows(step, batches, args.window)
            results[size, system] = statistics.median(rates)
            precisions[size, system] = getattr(step, "precision", "float32")
            traced = (
                f", update traced {step.traces()} time(s) for {shapes} batch shapes"
                if hasattr(step, "traces")
                else ""
            )
            print(
                f"  {size} / {system}: warm-up {warm:.0f} s{traced}; "
                f"{' / '.join(f'{r:,.0f}' for r in rates)} tokens/s",
                file=sys.stderr,
            )
        results[size, "weights"] = weights
        shape, stages = stage_times(model_config, batches)
        print(
            f"  {size} / transformer_tf float32, batch {shape[1][0]} x {shape[1][1]} "
            f"target tokens: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in stages.items()),
            file=sys.stderr,
        )

    if args.loss_curve_steps:
        model_config = resolve_model_config(
            config_from_dict({"model": SIZES[args.loss_curve_size]}).model,
            source_vocab,
            target_vocab,
        )
        print(
            f"\nTraining loss (label-smoothed, per real target token), mean of each 100 "
            f"updates; {args.loss_curve_size} model, {TRAIN}:"
        )
        steps = range(100, args.loss_curve_steps + 1, 100)
        print(f"| system | {' | '.join(f'{s}' for s in steps)} |")
        print("|---|" + "---|" * len(steps))
        for system in systems:
            tf.keras.utils.set_random_seed(1)
            step = make_step(system, model_config, batches)
            curve = loss_curve(step, batches, args.loss_curve_steps)
            print(f"| {system} | {' | '.join(f'{x:.3f}' for x in curve)} |", flush=True)
        print()

    print(
        "| model | system | tokens/s | vs the best peer (PyTorch eager, KerasHub) | "
        "model GFLOP/s | of the matmul peak of its precision |"
    )
    print("|---|---|---|---|---|---|")
    for size in sizes:
        peers = [results[size, peer] for peer in PEERS if (size, peer) in results]
        for system in systems:
            rate = results[size, system]
            gflops = 6 * results[size, "weights"] * rate / 1e9
            peak = peaks["bfloat16" if precisions[size, system] == "bfloat16" else "float32"]
            versus = f"{rate / max(peers):.2f}x" if peers else "(no peer run)"
            print(
                f"| {size} | {system} | {rate:,.0f} | {versus} | {gflops:.1f} | "
                f"{gflops / peak:.0%} |"
            )
    print(
        f"| | tf.matmul peak, float32 / bfloat16 | | | "
        f"{peaks['float32']:.0f} / {peaks['bfloat16']:.0f} | |"
    )


if __name__ == "__main__":
    main()
