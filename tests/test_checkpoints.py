"""Checkpoints: what a restore brings back (weights, optimizer slots, step), averaging,
and checkpoints written by earlier versions."""

import numpy as np
import tensorflow as tf

from transformer_tf.checkpoints import NAMES_BEFORE_0_2, restore_model
from transformer_tf.cli import main
from transformer_tf.config import ModelConfig
from transformer_tf.model import build_model
from transformer_tf.run_dir import RunDir
from transformer_tf.runner import Runner


def test_checkpoint_restores_weights_optimizer_slots_and_step(each_trained_run):
    run = each_trained_run
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-100.index",
        "ckpt-150.index",
    ]
    trainer = Runner.from_run_dir(run).trainer()  # restores the latest checkpoint
    optimizer = trainer.optimizer
    # assert_consumed: every value in the file found its variable, and every variable a value.
    trainer.checkpoint.restore(str(run / "checkpoints" / "ckpt-150")).assert_consumed()
    assert int(trainer.step) == 150
    assert int(optimizer.iterations) == 150
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-150"))
    stored = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if "/.ATTRIBUTES/VARIABLE_VALUE" in name and name.startswith("optimizer/_v")
    }
    assert stored  # Adam's second moments are in the checkpoint...
    restored = [v.numpy() for v in optimizer.variables if "velocity" in v.path]
    assert restored and all(np.any(v != 0) for v in restored)  # ...and came back.


def test_averaging_two_checkpoints_gives_the_mean_of_their_weights(trained_run):
    config = RunDir(trained_run).read_config()
    first = build_model(config.model)
    tf.train.Checkpoint(model=first).restore(
        str(trained_run / "checkpoints" / "ckpt-100")
    ).expect_partial()
    last, step = restore_model(trained_run, config.model)
    averaged, averaged_step = restore_model(trained_run, config.model, average_last=2)
    assert step == averaged_step == 150
    for a, b, mean in zip(
        first.trainable_variables, last.trainable_variables, averaged.trainable_variables
    ):
        np.testing.assert_allclose(mean.numpy(), (a.numpy() + b.numpy()) / 2, atol=1e-6)
    assert not np.allclose(
        first.trainable_variables[0].numpy(), last.trainable_variables[0].numpy()
    )


def test_averaging_more_checkpoints_than_kept_is_refused(trained_run, capsys):
    assert main(["export", "--run-dir", str(trained_run), "--average-last", "5"]) == 2
    assert "cannot average the last 5 checkpoints" in capsys.readouterr().err


def test_a_checkpoint_of_version_0_1_layer_names_still_loads(tmp_path):
    config = ModelConfig(
        num_layers=2,
        d_model=32,
        num_heads=4,
        dff=64,
        input_vocab_size=40,
        target_vocab_size=48,
        pe_input=20,
        pe_target=20,
    )
    old = build_model(config)
    for stack, names in NAMES_BEFORE_0_2.items():  # the attribute names 0.1 gave them
        for layer in getattr(old, stack).stack():
            for old_name, name in names.items():
                sublayer = getattr(layer, name)
                delattr(layer, name)
                setattr(layer, old_name, sublayer)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=old), str(RunDir(tmp_path).checkpoints), max_to_keep=1
    )
    saved = manager.save(checkpoint_number=7)
    graph = tf.train.load_checkpoint(saved).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert b"mha1" in graph and b"cross_attention" not in graph  # written as 0.1 did

    restored, step = restore_model(tmp_path, config)
    assert step == 7
    for mine, saved_value in zip(restored.get_weights(), old.get_weights()):
        np.testing.assert_array_equal(mine, saved_value)
    # The old names were only borrowed for the restore.
    assert not hasattr(restored.decoder.dec_layers[0], "mha1")
