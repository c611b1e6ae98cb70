"""Decoding speed on Multi30K test 2016 (1,000 sentences, en->de), a model of the
TensorFlow tutorial's size (4 layers, d_model 128, dff 512, 8 heads), the same weights for
every system, each system timed in a process of its own (CTranslate2 sharing a process
with TensorFlow was measured at half its speed alone):

- this package, greedy and beam search (`--beam-size`), batches of 64 and 256 sentences;
- CTranslate2 (float32, every core), greedy and beam search, on the same weights exported
  with `export --format ctranslate2`;
- a reference of the tutorial's translator, written here: greedy, one sentence at a time,
  the whole model (encoder included) re-run for every new token.

    python bench/decode.py --data ../shared/data/multi30k [--train-steps 400] [--repeats 3]

The weights come from a short training run of the package on Multi30K train
(`--train-steps`, in a temporary run directory), enough for the outputs to be sentences of
realistic length. Both beam searches rank by the summed log-probability (no length
penalty: the two define theirs differently), so they search for the same thing; the table
says how many outputs agree, and of those that differ, which system's output the model
scores higher. Each system is timed `--repeats` times after a warm-up (one timing varies by
10-20 % on these machines); the table shows the median. Prints one table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from transformer_tf.config import config_from_dict  # noqa: E402
from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, add_bos_eos  # noqa: E402
from transformer_tf.inference.search import sequence_scores  # noqa: E402
from transformer_tf.runner import Runner  # noqa: E402

from common import TUTORIAL_SIZE  # noqa: E402

SYSTEMS = ("transformer_tf", "CTranslate2", "tutorial-style reference")
# CTranslate2 searching as this package does with length_penalty 0: hypotheses ranked by
# their summed log-probability, and EOS allowed from the first step.
SAME_SEARCH = {"length_penalty": 0.0, "min_decoding_length": 0}


def train_run(data_dir, steps, run_dir):
    """A run of the tutorial's size trained `steps` updates on Multi30K, with its
    CTranslate2 export in `<run_dir>/ctranslate2`."""
    config = config_from_dict(
        {
            "run_dir": str(run_dir),
            "data": {"source": "multi30k", "dir": str(data_dir), "batch_size": 64},
            "tokenizer": {"source_vocab_size": 8000, "target_vocab_size": 8000},
            "model": TUTORIAL_SIZE,
            "train": {"steps": steps, "warmup_steps": 400, "eval_every": 0, "log_every": 100},
            "eval": {"length_penalty": 0.0},
        }
    )
    runner = Runner(config)
    runner.train()
    runner.export(export_format="ctranslate2")


def time_system(args):
    """In a process of its own: decode test 2016 with one system, `--repeats` times after
    a warm-up on 128 sentences; print {"times", "outputs"} as one JSON line."""
    runner = Runner.from_run_dir(args.run, [f"eval.beam_size={args.beam_size}"])
    translator = runner.translator()
    sentences = runner.split("test").sources[: args.sentences]
    if args.system == "transformer_tf":

        def translate(batch):
            return translator.translate(batch, args.batch_size)

    elif args.system == "CTranslate2":
        from transformer_tf.inference.export_ctranslate2 import (
            load_ctranslate2,
            translate_ctranslate2,
        )

        engine = load_ctranslate2(runner.run_dir.ctranslate2, len(os.sched_getaffinity(0)))

        def translate(batch):
            return translate_ctranslate2(
                engine, translator, batch, args.batch_size, args.beam_size, **SAME_SEARCH
            )

    else:
        translate = tutorial_translator(translator)
    translate(sentences[:128])  # trace every path once
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        outputs = translate(sentences)
        times.append(time.perf_counter() - started)
    print(json.dumps({"times": times, "outputs": outputs}))


def tutorial_translator(translator):
    """The tutorial's decoding loop: one sentence, the full model re-run per token, up to
    the budget this package's searches get."""
    model = translator.model

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32), tf.TensorSpec([], tf.int32)])
    def decode(source, max_length):
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

    def translate(sentences):
        outputs = []
        for sentence in sentences:
            source, budget = translator.encode(tf.constant([sentence]))
            outputs.append(decode(source, budget[0]))
        texts = translator.target_tokenizer.detokenize(tf.ragged.stack(outputs))
        return [text.decode("utf-8") for text in texts.numpy()]

    return translate


def model_scores(translator, sentences, outputs):
    """The model's summed log-probability of each output given its sentence."""
    source, _ = translator.encode(tf.constant(sentences))
    targets = add_bos_eos(translator.target_tokenizer.tokenize(tf.constant(outputs)), bos=False)
    return sequence_scores(translator.model, source, targets.to_tensor()).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/multi30k")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--batch-sizes", default="64,256", help="comma-separated batch sizes")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timings per system (median)")
    parser.add_argument("--sentences", type=int, default=1000, help="of test 2016 (a quick look)")
    # One system in this process (what the parent runs for every row):
    parser.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.system:
        return time_system(args)

    run = Path(tempfile.mkdtemp()) / "run"
    started = time.perf_counter()
    train_run(args.data, args.train_steps, run)
    print(
        f"trained {args.train_steps} steps in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )

    def timed(system, beam_size, batch_size):
        command = [sys.executable, __file__, "--system", system, "--run", str(run)]
        command += ["--beam-size", str(beam_size), "--batch-size", str(batch_size)]
        command += ["--repeats", str(args.repeats), "--sentences", str(args.sentences)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"{system} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"  {system}, beam {beam_size}, batch {batch_size}: {result['times']}", file=sys.stderr
        )
        return statistics.median(result["times"]), result["outputs"]

    runner = Runner.from_run_dir(run)
    translator, sentences = runner.translator(), runner.split("test").sources[: args.sentences]
    target_tokens = translator.target_tokenizer

    def row(name, seconds, outputs, agreement=""):
        tokens = int(tf.reduce_sum(target_tokens.tokenize(tf.constant(outputs)).row_lengths()))
        tokens += len(outputs)  # EOS, as every system generates it
        rows.append((name, len(outputs) / seconds, tokens / seconds, agreement))

    rows = []
    for batch_size in (int(size) for size in args.batch_sizes.split(",")):
        for beam_size in (1, args.beam_size):
            search = "greedy" if beam_size == 1 else f"beam {beam_size}"
            ours, our_outputs = timed("transformer_tf", beam_size, batch_size)
            theirs, their_outputs = timed("CTranslate2", beam_size, batch_size)
            differ = [i for i, (a, b) in enumerate(zip(our_outputs, their_outputs)) if a != b]
            agreement = f"{len(sentences) - len(differ)} of {len(sentences)} equal"
            if differ:
                pick = [sentences[i] for i in differ]
                our_scores = model_scores(translator, pick, [our_outputs[i] for i in differ])
                their_scores = model_scores(translator, pick, [their_outputs[i] for i in differ])
                higher = int((our_scores > their_scores + 1e-4).sum())
                lower = int((our_scores < their_scores - 1e-4).sum())
                agreement += f"; of the rest, ours scores higher {higher}, lower {lower}"
            row(f"transformer_tf {search}, batch {batch_size}", ours, our_outputs)
            row(
                f"CTranslate2 float32 {search}, batch {batch_size}",
                theirs,
                their_outputs,
                agreement,
            )
    seconds, outputs = timed("tutorial-style reference", 1, 1)
    row("tutorial-style reference, batch 1", seconds, outputs)

    base = rows[-1][1]
    print("| system | sentences/s | tokens/s | vs reference | outputs vs transformer_tf |")
    print("|---|---|---|---|---|")
    for name, sentences_per_second, tokens_per_second, agreement in rows:
        print(
            f"| {name} | {sentences_per_second:,.1f} | {tokens_per_second:,.0f} | "
            f"{sentences_per_second / base:.1f}x | {agreement} |"
        )


if __name__ == "__main__":
    main()
