"""The run directory: where each artifact of a run lives, and how a run's pieces are
rebuilt from it (config, tokenizers, model weights).

    <run_dir>/config.yaml        resolved config
    <run_dir>/vocab/             source.model, target.model (SentencePiece) or .vocab (WordPiece)
    <run_dir>/checkpoints/       tf.train.CheckpointManager
    <run_dir>/logs/train, eval   TensorBoard
    <run_dir>/eval/              hypotheses and scores of each evaluation
    <run_dir>/export/            SavedModel
    <run_dir>/metrics.jsonl      one JSON object per evaluation
"""

import dataclasses
from pathlib import Path

import tensorflow as tf
import yaml

from transformer_tf.config import ModelConfig, config_from_dict, save_config
from transformer_tf.data.tokenizers import load_tokenizers, round_up
from transformer_tf.errors import UserError
from transformer_tf.model import Transformer


class RunDir:
    """Paths inside one run directory."""

    def __init__(self, root):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.vocab = self.root / "vocab"
        self.checkpoints = self.root / "checkpoints"
        self.train_logs = self.root / "logs" / "train"
        self.eval_logs = self.root / "logs" / "eval"
        self.eval = self.root / "eval"
        self.export = self.root / "export"
        self.ctranslate2 = self.root / "ctranslate2"
        self.metrics = self.root / "metrics.jsonl"


def resolve_model_config(model_config, source_vocab_size, target_vocab_size):
    """Fill vocabulary sizes left empty from the tokenizers (rounded up to a multiple of 8,
    which keeps matrix shapes friendly to vector units); refuse sizes that are too small."""
    sizes = {"input_vocab_size": source_vocab_size, "target_vocab_size": target_vocab_size}
    resolved = {}
    for key, needed in sizes.items():
        given = getattr(model_config, key)
        if given is not None and given < needed:
            raise UserError(f"'model.{key}' is {given} but the tokenizer has {needed} entries; "
                            "remove the key to take the tokenizer's size, or raise it.")
        resolved[key] = given if given is not None else round_up(needed)
    if model_config.share_embeddings == "all" and len(set(resolved.values())) > 1:
        raise UserError("'model.share_embeddings: all' needs equal 'model.input_vocab_size' and "
                        f"'model.target_vocab_size', got {resolved['input_vocab_size']} and "
                        f"{resolved['target_vocab_size']}; remove both keys to take the shared "
                        "vocabulary's size.")
    return dataclasses.replace(model_config, **resolved)


DROPOUTS = ("rate", "attention_dropout", "activation_dropout")


def check_same_model(run_dir, config):
    """Refuse to reuse a run directory whose saved model shape differs from `config`'s."""
    saved_path = RunDir(run_dir).config
    if not saved_path.exists():
        return
    saved = config_from_dict(yaml.safe_load(saved_path.read_text(encoding="utf-8")),
                             str(saved_path)).model
    for field in dataclasses.fields(ModelConfig):
        if field.name in DROPOUTS:  # dropout may change between runs; the weights still fit
            continue
        old, new = getattr(saved, field.name), getattr(config.model, field.name)
        if new is not None and old != new:
            raise UserError(f"'{run_dir}' holds a model with model.{field.name}={old}, but the "
                            f"config asks for {new}; use another run_dir or the same model "
                            "settings.")


def write_config(run_dir, config):
    RunDir(run_dir).root.mkdir(parents=True, exist_ok=True)
    save_config(config, RunDir(run_dir).config)


def load_run_config(run_dir):
    """The resolved config saved in a run directory."""
    path = RunDir(run_dir).config
    if not path.exists():
        raise UserError(f"'{run_dir}' has no config.yaml; train first (transformer-tf train "
                        "--config ...) or point run_dir at a trained run.")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
                      "float16": "mixed_float16"}


def build_model(model_config, precision="float32"):
    """A `Transformer` from the model section, with its weights created.

    `precision` other than float32 computes in that dtype with float32 weights (Keras mixed
    precision); softmax, layer norm and the loss still compute in float32.
    """
    previous = tf.keras.config.dtype_policy()
    tf.keras.config.set_dtype_policy(PRECISION_POLICIES[precision])
    try:  # layers take the policy in force when they are made
        model = Transformer(**dataclasses.asdict(model_config))
        model(tf.ones([1, 2], tf.int32), tf.ones([1, 2], tf.int32), training=False)
    finally:
        tf.keras.config.set_dtype_policy(previous)
    return model


def load_run_tokenizers(config):
    """(source, target) tokenizers of the run `config` describes."""
    return load_tokenizers(RunDir(config.run_dir).vocab, config.tokenizer.type)


def checkpoint_paths(run_dir, best=False):
    """Checkpoint prefixes of a run, oldest first (`best`: the best one, kept apart)."""
    directory = RunDir(run_dir).checkpoints
    state = tf.train.get_checkpoint_state(str(directory / "best" if best else directory))
    return list(state.all_model_checkpoint_paths) if state else []


def restore_model(run_dir, model_config, average_last=1, best=False):
    """The model with the weights of the latest checkpoint in `run_dir` (or the mean of the
    last `average_last` checkpoints, or the best by validation), and its step."""
    paths = checkpoint_paths(run_dir, best)
    if not paths:
        raise UserError(f"'{run_dir}' has no best checkpoint; train with train.eval_every set."
                        if best else f"'{run_dir}' has no checkpoint; train first.")
    if average_last > len(paths):
        raise UserError(f"cannot average the last {average_last} checkpoints: '{run_dir}' keeps "
                        f"{len(paths)}; lower --average-last or raise train.keep_checkpoints.")
    model = build_model(model_config)
    checkpoint = tf.train.Checkpoint(model=model)
    total = None
    for path in paths[-average_last:]:
        # Every model weight must come back; the optimizer's entries are not needed here.
        checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
        weights = [v.numpy() for v in model.trainable_variables]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    if average_last > 1:
        for variable, summed in zip(model.trainable_variables, total):
            variable.assign(summed / average_last)
    return model, int(paths[-1].rsplit("-", 1)[-1])
