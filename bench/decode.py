"""Decoding speed on Multi30K test 2016 (1,000 sentences, en->de), a model of the
TensorFlow tutorial's size (4 layers, d_model 128, dff 512, 8 heads), the same weights for
every system:

- this package, greedy, batches of 64 and of 256 sentences of similar length (cached, in
  the graph);
- this package, beam search of 4, the same batches;
- a reference of the tutorial's translator, written here: greedy, one sentence at a time,
  the whole model (encoder included) re-run for every new token.

    python bench/decode.py --data ../shared/data/multi30k [--train-steps 400]

The weights come from a short training run on Multi30K train (`--train-steps`), enough for
the outputs to be sentences of realistic length. Prints one table.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from transformer_tf.config import config_from_dict  # noqa: E402
from transformer_tf.data.pipeline import train_dataset  # noqa: E402
from transformer_tf.data.sources import read_parallel  # noqa: E402
from transformer_tf.data.tokenizers import (BOS_ID, EOS_ID, SentencePieceTokenizer,  # noqa: E402
                                            train_sentencepiece)
from transformer_tf.inference.translator import Translator  # noqa: E402
from transformer_tf.run import build_model, resolve_model_config  # noqa: E402
from transformer_tf.training.optimizers import make_optimizer  # noqa: E402
from transformer_tf.training.step import TrainStep  # noqa: E402

TUTORIAL_SIZE = {"num_layers": 4, "d_model": 128, "num_heads": 8, "dff": 512,
                 "pe_input": 128, "pe_target": 128, "rate": 0.1}


def tutorial_translator(model):
    """The tutorial's decoding loop: one sentence, the full model re-run per token, up to
    `max_length` tokens (the same budget this package's searches get)."""

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def translate(source, max_length):
        output = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        output = output.write(0, BOS_ID)
        for i in tf.range(max_length):
            tokens = tf.reshape(output.stack(), [1, -1])  # [1, i + 1]
            logits, _ = model(source, tokens, training=False)
            next_id = tf.argmax(logits[:, -1, :], axis=-1, output_type=tf.int32)[0]
            output = output.write(i + 1, next_id)
            if next_id == EOS_ID:
                break
        return output.stack()

    return translate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/multi30k")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--batch-sizes", default="64,256",
                        help="comma-separated decoding batch sizes to time")
    args = parser.parse_args(argv)
    data = Path(args.data)
    config = config_from_dict({"model": TUTORIAL_SIZE, "data": {"batch_size": 64},
                               "train": {"warmup_steps": 400}})
    tf.keras.utils.set_random_seed(config.train.seed)  # before the tokenizers (see them)
    train_src, train_tgt = read_parallel(data / "train.en.gz", data / "train.de.gz")
    test_src, _ = read_parallel(data / "test_2016_flickr.en.gz", data / "test_2016_flickr.de.gz")
    tokenizers = [SentencePieceTokenizer.from_file(
        train_sentencepiece(text, f"/tmp/bench_decode_{side}.model", 8000), name=side)
        for side, text in (("source", train_src), ("target", train_tgt))]
    config.model = resolve_model_config(config.model, tokenizers[0].vocab_size,
                                        tokenizers[1].vocab_size)
    model = build_model(config.model)
    optimizer = make_optimizer(config.train, config.model.d_model)
    step = TrainStep(model, optimizer, config.train)
    started = time.perf_counter()
    for source, target in train_dataset(train_src, train_tgt, *tokenizers, config.data,
                                        seed=1, num_batches=args.train_steps):
        step.update(source, target)
    print(f"trained {args.train_steps} steps in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)

    rows = []
    runs = [(beam, int(size)) for beam in (1, 4) for size in args.batch_sizes.split(",")]
    for beam, batch_size in runs:
        name = f"transformer_tf {'greedy' if beam == 1 else f'beam {beam}'}, batch {batch_size}"
        settings = config.eval.__class__(**{**config.eval.__dict__, "beam_size": beam})
        translator = Translator(model, *tokenizers, settings)
        translator.translate(test_src[:128], batch_size)  # trace every path once
        started = time.perf_counter()
        outputs = translator.translate(test_src, batch_size)
        seconds = time.perf_counter() - started
        # Output tokens, EOS included, as the reference counts them.
        tokens = int(tf.reduce_sum(tokenizers[1].tokenize(tf.constant(outputs))
                                   .row_lengths())) + len(outputs)
        rows.append((name, len(test_src) / seconds, tokens / seconds))
        print(f"  {name}: {seconds:.1f} s", file=sys.stderr)

    reference = tutorial_translator(model)
    sources = [translator.encode(tf.constant([s])) for s in test_src]
    reference(sources[0][0], sources[0][1][0])
    started, tokens = time.perf_counter(), 0
    for source, budget in sources:
        tokens += int(tf.size(reference(source, budget[0]))) - 1
    seconds = time.perf_counter() - started
    rows.append(("tutorial-style reference, batch 1", len(sources) / seconds, tokens / seconds))
    print(f"  reference: {seconds:.1f} s", file=sys.stderr)

    base = rows[-1][1]
    print("| system | sentences/s | tokens/s | vs reference |")
    print("|---|---|---|---|")
    for name, sentences_per_second, tokens_per_second in rows:
        print(f"| {name} | {sentences_per_second:,.1f} | {tokens_per_second:,.0f} | "
              f"{sentences_per_second / base:.1f}x |")


if __name__ == "__main__":
    main()
