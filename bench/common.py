"""What the benchmarks share: Multi30K en->de with SentencePiece vocabularies, the model
sizes compared, and the matmul FLOP count of a model."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from transformer_tf.data.sources import read_parallel  # noqa: E402
from transformer_tf.data.tokenizers import SentencePieceTokenizer, train_sentencepiece  # noqa: E402

# The TensorFlow tutorial's model and the paper's base model.
SIZES = {
    "small": {
        "num_layers": 4,
        "d_model": 128,
        "num_heads": 8,
        "dff": 512,
        "pe_input": 128,
        "pe_target": 128,
        "rate": 0.1,
    },
    "base": {
        "num_layers": 6,
        "d_model": 512,
        "num_heads": 8,
        "dff": 2048,
        "pe_input": 128,
        "pe_target": 128,
        "rate": 0.1,
    },
}
TUTORIAL_SIZE = SIZES["small"]


def multi30k(data_dir, split):
    """(English sentences, German sentences) of a Multi30K split ("train", "val",
    "test_2016_flickr")."""
    data_dir = Path(data_dir)
    return read_parallel(data_dir / f"{split}.en.gz", data_dir / f"{split}.de.gz")


def multi30k_tokenizers(train_sources, train_targets, vocab_size=8000):
    """SentencePiece tokenizers (source, target) trained on the given sentences.

    Seed TensorFlow before calling this, not after (seeding clears the kernels that hold
    the tokenizers' models)."""
    directory = Path(tempfile.gettempdir())
    return [
        SentencePieceTokenizer.from_file(
            train_sentencepiece(text, directory / f"bench_{side}.model", vocab_size), name=side
        )
        for side, text in (("source", train_sources), ("target", train_targets))
    ]


def matmul_weights(model_config):
    """Weights a target token passes through in matrix multiplications: attention and
    feed-forward projections of both stacks and the output layer (embedding lookups and
    attention scores are left out, as in the usual 6 x weights x tokens estimate)."""
    d, dff, layers = model_config.d_model, model_config.dff, model_config.num_layers
    encoder = layers * (4 * d * d + 2 * d * dff)
    decoder = layers * (8 * d * d + 2 * d * dff)
    return encoder + decoder + d * model_config.target_vocab_size


def step_rate(config, batches, warm_up=3):
    """Sentences per second the training step of `config` (model resolved) consumes, timed
    over `batches` (a list of (source, target) batches) after `warm_up` of them; float32
    without XLA where the config leaves them `auto` (the step the input is compared with)."""
    import time

    from transformer_tf.model import build_model
    from transformer_tf.training.optimizers import make_optimizer
    from transformer_tf.training.probes import plain_settings
    from transformer_tf.training.step import TrainStep

    train = plain_settings(config.train)
    model = build_model(config.model, train.precision)
    step = TrainStep(model, make_optimizer(train, config.model.d_model), train)
    for source, target in batches[:warm_up]:
        step.update(source, target)
    started = time.perf_counter()
    for source, target in batches[warm_up:]:
        step.update(source, target)["loss_sum"].numpy()
    return sum(int(t.shape[0]) for _, t in batches[warm_up:]) / (time.perf_counter() - started)
