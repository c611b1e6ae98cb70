"""Shared fixtures: one tiny trained run for the whole session."""

import json
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
    "data.train_size=2000", "data.validation_size=40", "data.test_size=40",
    "data.batch_size=32", "model.num_layers=1", "model.d_model=64", "model.num_heads=2",
    "model.dff=128", "train.steps=150", "train.warmup_steps=50", "train.log_every=50",
    "train.checkpoint_every=100", "eval.samples=1",
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
    "tokenizer.shared=true", "model.share_embeddings=all", "model.norm=pre",
    "model.attention_dropout=0.1", "model.activation_dropout=0.1",
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
        "trained_run" if request.param == "paper" else "trained_tied_run")


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
        capture_output=True, text=True, timeout=300, cwd=export_dir.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
