"""Shared fixtures and helpers: tiny trained runs (one per session), a small corpus and
tokenizers, a small untrained model, TensorBoard readers."""

import contextlib
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

# The quickstart config shrunk to train in seconds: enough to learn, not to be good.
TINY = [
    "data.train_size=2000",
    "data.validation_size=40",
    "data.test_size=40",
    "data.batch_size=32",
    "model.num_layers=1",
    "model.d_model=64",
    "model.num_heads=2",
    "model.dff=128",
    "train.steps=150",
    "train.warmup_steps=50",
    "train.log_every=50",
    "train.checkpoint_every=100",
    "eval.samples=1",
    # Fixed, so that runs compare exactly (one device against two, resumed against not);
    # the auto choice has tests of its own.
    "train.precision=float32",
    "train.jit_compile=false",
]


def tiny_args(run_dir, *extra):
    args = ["--config", str(QUICKSTART), "--run-dir", str(run_dir)]
    for assignment in [*TINY, *extra]:
        args += ["--set", assignment]
    return args


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run trained for 150 steps, evaluated and exported by `transformer-tf train`.

    Tests must not change it: copy it (`copy_run`) to continue training.
    """
    from transformer_tf.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", *tiny_args(run_dir)]) == 0
    return run_dir


# The reference recipe's architecture options, all at once: one shared vocabulary and one
# embedding matrix for source, target and output, pre-norm, and both extra dropouts.
TIED_PRE_NORM = [
    "tokenizer.shared=true",
    "model.share_embeddings=all",
    "model.norm=pre",
    "model.attention_dropout=0.1",
    "model.activation_dropout=0.1",
]


@pytest.fixture(scope="session")
def trained_tied_run(tmp_path_factory):
    """As `trained_run`, with the options of `TIED_PRE_NORM`."""
    from transformer_tf.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "tied"
    assert main(["train", *tiny_args(run_dir, *TIED_PRE_NORM)]) == 0
    return run_dir


@pytest.fixture(params=["paper", "tied_pre_norm"])
def each_trained_run(request):
    """`trained_run` (the paper's architecture) and `trained_tied_run`, in turn."""
    return request.getfixturevalue(
        "trained_run" if request.param == "paper" else "trained_tied_run"
    )


@pytest.fixture
def copy_run(trained_run, tmp_path):
    """A private copy of the trained run."""
    destination = tmp_path / "tiny"
    shutil.copytree(trained_run, destination)
    return destination


_SERVE_SCRIPT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the tokenizers' ops
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](sentences=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({
    "translations": [t.decode("utf-8") for t in out["translations"].numpy()],
    "scores": out["scores"].numpy().tolist(),
    "imported_package": any(m.startswith("transformer_tf") for m in sys.modules)}))
"""


def serve_in_fresh_process(export_dir, sentences):
    """Translate `sentences` with the SavedModel in a new Python that imports only
    tensorflow and tensorflow_text; returns its {"translations", "scores",
    "imported_package"}."""
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_SCRIPT, str(export_dir), json.dumps(sentences)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=export_dir.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def captured_log(name="transformer_tf"):
    """The messages logged under `name` inside the block, as a list of strings (whatever
    handlers the CLI has set up, which stop caplog's root handler from seeing them)."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_quietly(args, **kwargs):
    """`subprocess.run` of a command with TensorFlow's start-up logging off."""
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
        **kwargs,
    )


def read_events(log_dir):
    """{tag: {step: numpy value}} from the TensorBoard event files in `log_dir`."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()
    return {
        tag: {e.step: tf.make_ndarray(e.tensor_proto) for e in events.Tensors(tag)}
        for tag in events.Tags()["tensors"]
    }


def read_scalars(log_dir):
    """{tag: {step: float}} of the scalar summaries in `log_dir`."""
    return {
        tag: {step: float(value) for step, value in steps.items()}
        for tag, steps in read_events(log_dir).items()
        if all(value.dtype.kind == "f" for value in steps.values())
    }


# -- a small corpus and tokenizers made from it (data tests) ----------------------------------

SPLIT_SIZES = {"train": 300, "validation": 20, "test": 20}


def write_lines(path, lines, compress=False):
    """Write `lines` to `path`, one per line (gzip-compressed with `compress`)."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def same_text(sentences):
    """A dataset of (source, target) strings with `sentences` on both sides: training pairs
    whose lengths are known from one tokenizer."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((sentences, sentences))


@pytest.fixture(scope="module")
def corpus():
    """The synthetic corpus, small: {split: (english, german)}."""
    from transformer_tf.data import synthetic

    return synthetic.generate_splits(*SPLIT_SIZES.values(), seed=7)


@pytest.fixture(scope="module")
def tokenizers(corpus, tmp_path_factory):
    """{"sentencepiece": ..., "wordpiece": ...} German tokenizers of `corpus`."""
    from transformer_tf.data.tokenizers import (
        SentencePieceTokenizer,
        WordPieceTokenizer,
        build_wordpiece_vocab,
        train_sentencepiece,
    )

    folder = tmp_path_factory.mktemp("vocab")
    german = corpus["train"][1]
    return {
        "sentencepiece": SentencePieceTokenizer.from_file(
            train_sentencepiece(german, folder / "de.model", 300)
        ),
        "wordpiece": WordPieceTokenizer.from_file(
            build_wordpiece_vocab(german, folder / "de.vocab", 300)
        ),
    }


# -- a small untrained model (model tests) ------------------------------------------------------

VOCAB_IN, VOCAB_OUT = 50, 60


def small_transformer(rate=0.1, input_vocab_size=VOCAB_OUT, **options):
    """A seeded 2-layer Transformer of width 32 with `options`."""
    import tensorflow as tf

    from transformer_tf.model import Transformer

    tf.keras.utils.set_random_seed(0)
    return Transformer(
        num_layers=2,
        d_model=32,
        num_heads=4,
        dff=64,
        input_vocab_size=input_vocab_size,
        target_vocab_size=VOCAB_OUT,
        pe_input=40,
        pe_target=40,
        rate=rate,
        **options,
    )


@pytest.fixture(scope="module")
def model():
    """`small_transformer` with separate vocabularies of VOCAB_IN and VOCAB_OUT ids."""
    return small_transformer(input_vocab_size=VOCAB_IN)


def model_batch():
    """(inp [2, 7], tar [2, 5]) ids with padding, for `model`."""
    import tensorflow as tf

    inp = tf.constant([[5, 6, 7, 8, 3, 0, 0], [9, 4, 3, 0, 0, 0, 0]], tf.int32)
    tar = tf.constant([[2, 11, 12, 13, 14], [2, 15, 16, 0, 0]], tf.int32)
    return inp, tar


# -- a tiny question-answering run: JSON records, a two-field source template ------------------

FIELDS_TEMPLATE = "question: {question} context: {context}"


def write_records(path, records):
    """Write `records` (dicts) as JSON lines to `path` (gzip-compressed if it ends in .gz)."""
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    return write_lines(path, lines, compress=path.suffix == ".gz")


def qa_records(english, german):
    """Records of two fields and two answers made from the synthetic corpus: the question is
    the English sentence, the context a fixed phrase; the answers its German translation
    and the same in capitals."""
    return [
        {"question": en, "context": "a story", "answers": [de, de.upper()]}
        for en, de in zip(english, german)
    ]


@pytest.fixture(scope="session")
def trained_fields_run(tmp_path_factory):
    """A tiny run on JSON records with a two-field template, scored with ROUGE as well,
    choosing its best checkpoint by ROUGE-L; exported with named inputs. Its model copies
    from the source (one vocabulary, `model.copy_attention`), as a question-answering
    model may."""
    from transformer_tf.cli import main
    from transformer_tf.data import synthetic

    root = tmp_path_factory.mktemp("fields")
    splits = synthetic.generate_splits(2000, 40, 40, seed=1234)
    files = {}
    for split, (english, german) in splits.items():
        files[split] = write_records(root / f"{split}.jsonl.gz", qa_records(english, german))
    run_dir = root / "run"
    args = tiny_args(
        run_dir,
        "data.source=jsonl",
        *(f"data.{split}.jsonl={path}" for split, path in files.items()),
        f"data.source_template='{FIELDS_TEMPLATE}'",
        "data.target_field=answers",
        "data.reference_fields=[answers]",
        "eval.metrics=[bleu, chrf, rouge]",
        "train.best_metric=rouge_l",
        "train.eval_every=100",
        "eval.max_sentences=20",
        "tokenizer.shared=true",
        "model.copy_attention=true",
    )
    assert main(["train", *args]) == 0
    return run_dir
