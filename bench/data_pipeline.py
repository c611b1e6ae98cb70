"""Does the input pipeline keep up with training? Multi30K train (en->de), the tokenizers and
batching of configs/multi30k_en_de.yaml:

- the pipeline alone: sentences per second on its first pass (reading the files, tokenizing
  and counting the pairs' lengths, which training does once at its start) and over an
  epoch (read, tokenized, shuffled and batched again: the steady state of every epoch);
- the training step alone: sentences per second it consumes (the same batches, taken from
  memory, after warm-up).

    python bench/data_pipeline.py --data ../shared/data/multi30k

The pipeline must deliver at least 10 times what training consumes. Prints one table.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from transformer_tf.config import (
    load_config,  # noqa: E402
    resolve_model_config,  # noqa: E402
)
from transformer_tf.data.pipeline import (  # noqa: E402
    length_statistics,
    train_dataset,
    training_pairs,
)
from transformer_tf.data.sources import TrainingText  # noqa: E402
from transformer_tf.data.tokenizers import build_or_load_tokenizers  # noqa: E402

from common import step_rate  # noqa: E402


def epoch_rate(batches, epoch_sentences):
    """Sentences per second over one epoch of `batches`."""
    started, sentences = time.perf_counter(), 0
    while sentences < epoch_sentences:
        _, target = next(batches)
        sentences += int(target.shape[0])
    return sentences / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi30k_en_de.yaml")
    parser.add_argument("--data", default="../shared/data/multi30k")
    parser.add_argument(
        "--train-batches", type=int, default=20, help="timed training steps (after 3 of warm-up)"
    )
    args = parser.parse_args(argv)
    config = load_config(args.config, [f"data.dir={args.data}"])
    tf.keras.utils.set_random_seed(config.train.seed)  # before the tokenizers (see them)
    text = TrainingText(config.data)
    with tempfile.TemporaryDirectory() as vocab:
        tokenizers = build_or_load_tokenizers(
            config.tokenizer, (s for s, _ in text.pairs()), (t for _, t in text.pairs()), vocab
        )

    pairs = training_pairs(text.dataset(), *tokenizers)
    started = time.perf_counter()
    statistics = length_statistics(pairs)  # the first pass: reads, tokenizes, counts
    first = statistics.pairs / (time.perf_counter() - started)
    batches = iter(train_dataset(pairs, config.data, seed=0, statistics=statistics))
    steady = epoch_rate(batches, statistics.pairs)
    print(f"pipeline: first pass {first:,.0f} sentences/s, epoch {steady:,.0f}", file=sys.stderr)

    config.model = resolve_model_config(
        config.model, tokenizers[0].vocab_size, tokenizers[1].vocab_size
    )
    consumed = step_rate(config, [next(batches) for _ in range(args.train_batches + 3)])

    print(
        f"Multi30K train, {args.config} (batch_tokens {config.data.batch_tokens}, "
        f"model {config.model.num_layers} layers / d_model {config.model.d_model}, "
        f"{config.train.precision})"
    )
    print("| stage | sentences/s | vs training |")
    print("|---|---|---|")
    for name, rate in (
        ("pipeline, first pass (read + tokenize + count)", first),
        ("pipeline, every epoch (read + tokenize + shuffle + batch)", steady),
        ("training step (consumes)", consumed),
    ):
        print(f"| {name} | {rate:,.0f} | {rate / consumed:.1f}x |")


if __name__ == "__main__":
    main()
