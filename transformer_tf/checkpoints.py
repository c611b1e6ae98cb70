"""A run's checkpoints: their paths, restoring them (also those of earlier versions), the
minutes of training each holds, and a model restored from the latest, the best by
validation, or the mean of the last N."""

import contextlib
import json
import logging
import os
from pathlib import Path

import tensorflow as tf

from transformer_tf.errors import UserError
from transformer_tf.model import build_model
from transformer_tf.run_dir import RunDir

log = logging.getLogger(__name__)

# What reading a damaged checkpoint raises: a missing or truncated index (NotFoundError,
# DataLossError), a truncated data file (IndexError: "Read less bytes than requested"), a
# corrupted one (DataLossError: checksum).
DAMAGED = (tf.errors.OpError, IndexError, ValueError)


def checkpoint_paths(run_dir, best=False):
    """Checkpoint prefixes of a run, oldest first (`best`: the best one, kept apart)."""
    directory = RunDir(run_dir)
    state = tf.train.get_checkpoint_state(
        str(directory.best_checkpoints if best else directory.checkpoints)
    )
    return list(state.all_model_checkpoint_paths) if state else []


def checkpoint_step(path):
    """The training step of a checkpoint prefix (`.../ckpt-1200` -> 1200)."""
    return int(str(path).rsplit("-", 1)[-1])


# Seconds of training at each checkpoint's step, summed over the runs that resumed it (what
# train.max_minutes counts), in a file beside the checkpoints: kept out of the checkpoints
# themselves, those of earlier versions still restore.
TRAINING_TIME = "training_time.json"


def _read_training_time(directory):
    path = Path(directory) / TRAINING_TIME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring %s: it does not read back (%s)", path, err)
        return {}


def training_seconds(directory, step):
    """Seconds of training that the checkpoint of `step` in the checkpoint `directory` holds,
    or None when not recorded (a checkpoint of an earlier version)."""
    return _read_training_time(directory).get(str(step))


def record_training_seconds(directory, step, seconds):
    """Record that the checkpoint of `step` in `directory` holds `seconds` of training
    (written whole or not at all)."""
    record = _read_training_time(directory)
    record[str(step)] = round(seconds, 1)
    path = Path(directory) / TRAINING_TIME
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=0) + "\n", encoding="utf-8")
    os.replace(partial, path)


# A checkpoint finds each weight through the attribute names leading to it. Version 0.1
# named these layers otherwise; those names are attached as aliases while a checkpoint is
# read, so its checkpoints still load (a checkpoint with today's names ignores them).
NAMES_BEFORE_0_2 = {
    "encoder": {"mha": "self_attention", "ffn": "feed_forward"},
    "decoder": {"mha1": "self_attention", "mha2": "cross_attention", "ffn": "feed_forward"},
}


@contextlib.contextmanager
def _names_before_0_2(model):
    aliased = []
    for stack, names in NAMES_BEFORE_0_2.items():
        for layer in getattr(model, stack).stack():
            for old, new in names.items():
                setattr(layer, old, getattr(layer, new))
                aliased.append((layer, old))
    try:
        yield
    finally:
        for layer, old in aliased:
            delattr(layer, old)


def restore_checkpoint(checkpoint, path, model):
    """`checkpoint.restore(path)` for a `tf.train.Checkpoint` holding `model`, whichever
    version of this package wrote it; every object of `checkpoint` must find its values.
    Returns the restore status."""
    with _names_before_0_2(model):
        return checkpoint.restore(path).assert_existing_objects_matched()


def restore_intact(checkpoint, paths, model):
    """Restore `paths` into `checkpoint` (holding `model`) newest first, yielding each
    (path, status) that reads back whole; a damaged one (truncated, a file missing) is
    skipped with a warning that names it and why."""
    for path in reversed(paths):
        try:
            status = restore_checkpoint(checkpoint, path, model)
        except DAMAGED as err:
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            log.warning(
                "skipping checkpoint %s: it does not read back (%s: %s)",
                path,
                type(err).__name__,
                reason,
            )
            continue
        yield path, status


def restore_model(run_dir, model_config, average_last=1, best=False):
    """A float32 model with the weights of the latest checkpoint in `run_dir` (or the mean
    of the last `average_last` checkpoints, or the best by validation), and its step.

    Returns (model, step).
    """
    paths = checkpoint_paths(run_dir, best)
    if not paths:
        raise UserError(
            f"'{run_dir}' has no best checkpoint; train with train.eval_every set."
            if best
            else f"'{run_dir}' has no checkpoint; train first."
        )
    if average_last > len(paths):
        raise UserError(
            f"cannot average the last {average_last} checkpoints: '{run_dir}' keeps "
            f"{len(paths)}; lower --average-last or raise train.keep_checkpoints."
        )
    model = build_model(model_config)
    checkpoint = tf.train.Checkpoint(model=model)
    total, restored = None, []
    for path, status in restore_intact(checkpoint, paths, model):
        # Every model weight must come back; the optimizer's entries are not needed here.
        status.expect_partial()
        weights = [v.numpy() for v in model.trainable_variables]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
        restored.append(path)
        if len(restored) == average_last:
            break
    if len(restored) < average_last:
        raise UserError(
            f"only {len(restored)} of the {len(paths)} checkpoints in '{run_dir}' read back "
            f"whole (the warnings above say why), {average_last} needed; lower "
            "--average-last, or train on to write new ones."
        )
    if average_last > 1:
        for variable, summed in zip(model.trainable_variables, total):
            variable.assign(summed / average_last)
    return model, checkpoint_step(restored[0])
