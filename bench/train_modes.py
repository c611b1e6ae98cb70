"""Training throughput of one config in float32, bfloat16 and float32 with XLA.

    python bench/train_modes.py --config configs/quickstart.yaml [--window 30]

Each mode trains the same model on the same batches (real target tokens counted, batches
padded to their length bucket so XLA sees a fixed set of shapes). After a warm-up that
covers every bucket shape, it times three windows of `--window` seconds and prints the
median tokens/s of each mode. Nothing is written to disk.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from transformer_tf.config import load_config  # noqa: E402
from transformer_tf.data.pipeline import train_dataset  # noqa: E402
from transformer_tf.data.sources import load_splits  # noqa: E402
from transformer_tf.data.tokenizers import SentencePieceTokenizer, train_sentencepiece  # noqa: E402
from transformer_tf.run import build_model, resolve_model_config  # noqa: E402
from transformer_tf.training.optimizers import make_optimizer  # noqa: E402
from transformer_tf.training.step import TrainStep  # noqa: E402

MODES = [("float32", "float32", False), ("bfloat16", "bfloat16", False),
         ("float32 + XLA", "float32", True)]


def measure(config, splits, tokenizers, precision, jit, window, warmup_batches):
    train = config.train.__class__(**{**config.train.__dict__, "precision": precision,
                                      "jit_compile": jit})
    model = build_model(config.model, precision)
    optimizer = make_optimizer(train, config.model.d_model)
    optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, train)
    batches = iter(train_dataset(*splits["train"], *tokenizers, config.data, seed=train.seed))
    for _ in range(warmup_batches):
        step.update(*next(batches))
    rates = []
    for _ in range(3):
        tokens, start = 0.0, time.perf_counter()
        while time.perf_counter() - start < window:
            tokens += float(step.update(*next(batches))["tokens"])
        rates.append(tokens / (time.perf_counter() - start))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--warmup", type=int, default=150, help="warm-up batches per mode")
    args = parser.parse_args(argv)
    config = load_config(args.config, ["data.pad_to_buckets=true"])
    # Seed before the tokenizers exist: seeding clears the kernels that own their models.
    tf.keras.utils.set_random_seed(config.train.seed)
    splits = load_splits(config.data)
    tokenizers = []
    for side, sentences, size in [("source", splits["train"][0],
                                   config.tokenizer.source_vocab_size),
                                  ("target", splits["train"][1],
                                   config.tokenizer.target_vocab_size)]:
        path = train_sentencepiece(sentences, f"/tmp/bench_{side}.model", size)
        tokenizers.append(SentencePieceTokenizer.from_file(path, name=side))
    config.model = resolve_model_config(config.model, tokenizers[0].vocab_size,
                                        tokenizers[1].vocab_size)
    print(f"{args.config}: {config.model.num_layers} layers, d_model {config.model.d_model}, "
          f"dff {config.model.dff}, {config.model.num_heads} heads, batch "
          f"{config.data.batch_size} sentences; 3 windows of {args.window:.0f} s per mode",
          file=sys.stderr)
    results = {}
    for name, precision, jit in MODES:
        results[name] = measure(config, splits, tokenizers, precision, jit, args.window,
                                args.warmup)
        print(f"  {name}: {', '.join(f'{r:,.0f}' for r in results[name])} tokens/s",
              file=sys.stderr)
    base = statistics.median(results["float32"])
    print("| mode | tokens/s (median of 3) | windows | vs float32 |")
    print("|---|---|---|---|")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"| {name} | {median:,.0f} | {' / '.join(f'{r:,.0f}' for r in rates)} | "
              f"{median / base:.2f}x |")


if __name__ == "__main__":
    main()
