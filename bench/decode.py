"""Decoding speed on Multi30K test 2016 (1,000 sentences, en->de), a model of the
TensorFlow tutorial's size (4 layers, d_model 128, dff 512, 8 heads), the same weights for
every system:

- this package, greedy, batches of 64 and of 256 sentences of similar length (cached, in
  the graph);
- this package, beam search of 4, the same batches;
- CTranslate2 (float32, the same batch sizes, every core), greedy, on the same weights
  exported with `export --format ctranslate2`; the share of its outputs equal to this
  package's greedy outputs is printed;
- a reference of the tutorial's translator, written here: greedy, one sentence at a time,
  the whole model (encoder included) re-run for every new token.

    python bench/decode.py --data ../shared/data/multi30k [--train-steps 400] [--repeats 3]

The weights come from a short training run on Multi30K train (`--train-steps`), enough for
the outputs to be sentences of realistic length. Each system is timed `--repeats` times
(one decode of the test set takes seconds, and one timing varies by 10-20 % on these
machines); the table shows the median. Prints one table.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from transformer_tf.config import (
    config_from_dict,  # noqa: E402
    resolve_model_config,  # noqa: E402
)
from transformer_tf.data.pipeline import train_dataset, training_pairs  # noqa: E402
from transformer_tf.data.tokenizers import BOS_ID, EOS_ID  # noqa: E402
from transformer_tf.inference.export_ctranslate2 import (  # noqa: E402
    export_ctranslate2,
    load_ctranslate2,
    translate_ctranslate2,
)
from transformer_tf.inference.translator import Translator  # noqa: E402
from transformer_tf.model import build_model  # noqa: E402
from transformer_tf.training.optimizers import make_optimizer  # noqa: E402
from transformer_tf.training.step import TrainStep  # noqa: E402

from common import TUTORIAL_SIZE, multi30k, multi30k_tokenizers  # noqa: E402


def tutorial_translator(model):
    """The tutorial's decoding loop: one sentence, the full model re-run per token, up to
    `max_length` tokens (the same budget this package's searches get)."""

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32), tf.TensorSpec([], tf.int32)])
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
    parser.add_argument(
        "--batch-sizes", default="64,256", help="comma-separated decoding batch sizes to time"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per system; the median is reported"
    )
    args = parser.parse_args(argv)
    config = config_from_dict(
        {"model": TUTORIAL_SIZE, "data": {"batch_size": 64}, "train": {"warmup_steps": 400}}
    )
    tf.keras.utils.set_random_seed(config.train.seed)  # before the tokenizers (see them)
    train_src, train_tgt = multi30k(args.data, "train")
    test_src, _ = multi30k(args.data, "test_2016_flickr")
    tokenizers = multi30k_tokenizers(train_src, train_tgt)
    config.model = resolve_model_config(
        config.model, tokenizers[0].vocab_size, tokenizers[1].vocab_size
    )
    model = build_model(config.model)
    optimizer = make_optimizer(config.train, config.model.d_model)
    step = TrainStep(model, optimizer, config.train)
    started = time.perf_counter()
    pairs = training_pairs(train_src, train_tgt, *tokenizers)
    for source, target in train_dataset(pairs, config.data, seed=1, num_batches=args.train_steps):
        step.update(source, target)
    print(
        f"trained {args.train_steps} steps in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )

    def timed(name, translate):
        """Time `translate(sentences)` on the test set `--repeats` times after a warm-up on
        128 of them; add a row of the median (output tokens counted with EOS, as the
        reference counts them)."""
        translate(test_src[:128])  # trace every path once
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            outputs = translate(test_src)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        tokens = int(
            tf.reduce_sum(tokenizers[1].tokenize(tf.constant(outputs)).row_lengths())
        ) + len(outputs)
        rows.append((name, len(test_src) / seconds, tokens / seconds))
        print(f"  {name}: {', '.join(f'{t:.2f}' for t in times)} s", file=sys.stderr)
        return outputs

    rows, greedy_outputs = [], {}
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    for beam in (1, 4):
        settings = config.eval.__class__(**{**config.eval.__dict__, "beam_size": beam})
        translator = Translator(model, *tokenizers, settings)
        for batch_size in batch_sizes:
            name = f"transformer_tf {'greedy' if beam == 1 else f'beam {beam}'}, batch {batch_size}"
            outputs = timed(name, lambda s: translator.translate(s, batch_size))
            if beam == 1:
                greedy, greedy_outputs[batch_size] = translator, outputs

    directory = export_ctranslate2(greedy, Path(tempfile.mkdtemp()) / "ctranslate2")
    engine = load_ctranslate2(directory, threads=len(os.sched_getaffinity(0)))
    for batch_size in batch_sizes:
        outputs = timed(
            f"CTranslate2 float32 greedy, batch {batch_size}",
            lambda s: translate_ctranslate2(engine, greedy, s, batch_size),
        )
        same = sum(a == b for a, b in zip(outputs, greedy_outputs[batch_size]))
        print(
            f"    same output as transformer_tf greedy: {same} of {len(outputs)}", file=sys.stderr
        )

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
        print(
            f"| {name} | {sentences_per_second:,.1f} | {tokens_per_second:,.0f} | "
            f"{sentences_per_second / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
