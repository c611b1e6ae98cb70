"""Corpora larger than memory (issue 19): memory and start-up time against corpus size.

For each size (default 100 k, 1 M and 5 M training pairs) it writes a synthetic English ->
German corpus to disk (the package's embedded grammar, gzip text in 4 shards, duplicates
allowed; no network), then measures, each command in a process of its own:

- `build-vocab`: seconds (the vocabularies come from a sample of `tokenizer.sample_size`);
- `prepare` (8 shards): seconds;
- `train` from the prepared pairs, and from the text (vocabularies copied, nothing
  prepared): seconds from the process's start to its first update, and its peak resident
  memory (RSS);
- resume: seconds to the first batch of the training pipeline (prepared pairs; the fastest
  of three tries each) started early, at the last batch of the first block of the first
  epoch, and late, at the last batch of the last block 1,000 epochs in: both remake one
  block's batches, the late one also skips a whole epoch of pairs at their source;
- the training pipeline's steady sentences/s (prepared pairs, and text) against what the
  training step (the model below, float32) consumes.

    python bench/data_scale.py                        # 100k, 1M, 5M
    python bench/data_scale.py --sizes 2000 20000     # a quick look
    python bench/data_scale.py --keep DIR             # keep the corpora and runs in DIR

Prints one table, with the CPU it ran on.
"""

import argparse
import dataclasses
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from transformer_tf.config import load_config, resolve_model_config  # noqa: E402
from transformer_tf.data import synthetic  # noqa: E402
from transformer_tf.data.pipeline import block_batches, train_dataset, training_pairs  # noqa: E402
from transformer_tf.runner import Runner  # noqa: E402

from common import step_rate  # noqa: E402

SHARDS = 4
PIPELINE_BATCHES = 300  # timed batches of the steady pipeline, after 20 untimed
LATE_EPOCHS = 1000

CONFIG = {
    "data": {"source": "text", "batch_tokens": 2048, "max_length": 64},
    "tokenizer": {"type": "sentencepiece", "shared": True, "source_vocab_size": 8000},
    "model": {
        "num_layers": 4,
        "d_model": 128,
        "num_heads": 4,
        "dff": 256,
        "pe_input": 128,
        "pe_target": 128,
        "share_embeddings": "all",
    },
    "train": {"steps": 3, "log_every": 1, "checkpoint_every": 100000},
    "export": {"after_training": False},
}


def write_corpus(directory, size, seed=1):
    """`size` training pairs in SHARDS gzip shards (pair j in shard j mod SHARDS), and
    validation and test splits of 200 distinct pairs; returns the config file."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = []
    for shard in range(SHARDS):
        files.append(
            [
                gzip.open(directory / f"train-{shard}.{side}.gz", "wt", compresslevel=1)
                for side in ("en", "de")
            ]
        )
    for number in range(size):
        english, german = synthetic.random_pair(rng)
        source, target = files[number % SHARDS]
        source.write(english + "\n")
        target.write(german + "\n")
    for handles in files:
        for handle in handles:
            handle.close()
    splits = synthetic.generate_splits(0, 200, 200, seed=seed + 1)
    data = dict(CONFIG["data"])
    for split in ("validation", "test"):
        for side, lines in zip(("en", "de"), splits[split]):
            (directory / f"{split}.{side}").write_text("".join(f"{x}\n" for x in lines))
        data[split] = {
            "source": str(directory / f"{split}.en"),
            "target": str(directory / f"{split}.de"),
        }
    data["train"] = {
        "source": str(directory / "train-*.en.gz"),
        "target": str(directory / "train-*.de.gz"),
    }
    config = {**CONFIG, "data": data, "run_dir": str(directory / "run")}
    path = directory / "config.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def timed(arguments, marker=None):
    """Run `transformer-tf ARGUMENTS` in a new process: (seconds, seconds until a stderr
    line holding `marker` appeared, peak RSS in MB). The peak is the process's own
    (VmHWM, read while it runs): the kernel's rusage of a child also counts the parent's
    memory it was forked from."""
    command = [sys.executable, "-m", "transformer_tf.cli", *arguments]
    started, seen, lines, peak = time.perf_counter(), None, [], [0.0]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )

    def watch():
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                text = status.read_text()
            except OSError:
                break
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in process.stderr:
        lines.append(line)
        if seen is None and marker and marker in line:
            seen = time.perf_counter() - started
    process.wait()
    watcher.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{''.join(lines[-20:])}")
    return time.perf_counter() - started, seen, peak[0]


def pipeline_rate(batches):
    """Sentences/s of `batches` (an iterator) over PIPELINE_BATCHES, after 20 untimed."""
    for _ in range(20):
        next(batches)
    started, sentences = time.perf_counter(), 0
    for _ in range(PIPELINE_BATCHES):
        sentences += int(next(batches)[1].shape[0])
    return sentences / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument(
        "--keep", help="write the corpora here and keep them (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="data_scale_"))
    rows = []
    for size in args.sizes:
        directory = root / f"pairs_{size}"
        started = time.perf_counter()
        config = str(write_corpus(directory, size))
        print(f"{size:,} pairs written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        vocab, _, _ = timed(["build-vocab", "--config", config])
        prepare, _, _ = timed(["prepare", "--config", config, "--shards", "8"])
        _, first_prepared, rss_prepared = timed(["train", "--config", config], "step 1/")
        text_run = directory / "run_text"
        shutil.copytree(directory / "run" / "vocab", text_run / "vocab")
        _, first_text, rss_text = timed(
            ["train", "--config", config, "--run-dir", str(text_run)], "step 1/"
        )
        measured = measure_in_process(config)
        rows.append(
            (size, vocab, prepare, first_prepared, rss_prepared, first_text, rss_text, *measured)
        )
        print(rows[-1], file=sys.stderr)
        if not args.keep:
            shutil.rmtree(directory)
    print_table(rows)


def measure_in_process(config_path):
    """(prepared sentences/s, text sentences/s, training step sentences/s, seconds to the
    first batch resuming early and late), on the run `prepare` filled."""
    runner = Runner(load_config(config_path))
    tf.keras.utils.set_random_seed(runner.config.train.seed)  # before the tokenizers
    tokenizers = runner.tokenizers()
    model_config = resolve_model_config(runner.config.model, *(t.vocab_size for t in tokenizers))
    config = dataclasses.replace(runner.config, model=model_config)
    data = config.data
    prepared_pairs = runner.training_pairs()
    prepared, statistics = prepared_pairs.stream(0, 1), prepared_pairs.statistics(0, 1)
    # The same pairs from the text (their statistics are the prepared ones: no extra pass).
    text_pairs = training_pairs(
        runner.training_text().dataset(), *tokenizers, model_config.pe_input
    )
    rates = []
    for pairs in (prepared, text_pairs):
        rates.append(pipeline_rate(iter(train_dataset(pairs, data, 1, statistics=statistics))))
    batches = iter(train_dataset(prepared, data, 1, statistics=statistics))
    consumed = step_rate(config, [next(batches) for _ in range(23)])
    # The worst place to resume early and late: the last batch of the first block of the
    # first epoch, and the last batch of the last block 1,000 epochs in. Both remake one
    # block's batches; the late one also skips the whole epoch before its block.
    blocks = block_batches(statistics, data)
    early = int(blocks[0]) - 1
    late = LATE_EPOCHS * int(blocks.sum()) + int(blocks.sum()) - 1
    resume = {early: [], late: []}
    for _ in range(3):  # in turn, the fastest of three each: the first calls warm caches
        for start in resume:
            started = time.perf_counter()
            resumed = train_dataset(
                prepared,
                data,
                1,
                start_batch=start,
                statistics=statistics,
                pairs_after=lambda skip: prepared_pairs.stream(0, 1, skip),
            )
            next(iter(resumed))
            resume[start].append(time.perf_counter() - started)
    return (*rates, consumed, *(min(times) for times in resume.values()))


def print_table(rows):
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    print(f"bench/data_scale.py on {cpu}, {os.cpu_count()} cores")
    print(
        "| pairs | build-vocab s | prepare s | first update, prepared s | peak RSS, prepared MB "
        "| first update, text s | peak RSS, text MB | pipeline, prepared sent/s "
        "| pipeline, text sent/s | training step sent/s | resume early s "
        "| resume 1,000 epochs later s |"
    )
    print("|" + "---|" * 12)
    for size, *values in rows:
        cells = [f"{v:,.0f}" if v >= 100 else f"{v:.2f}" for v in values]
        print(f"| {size:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
