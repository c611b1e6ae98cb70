"""Optimizers: Adam as in the paper, AdamW with decoupled weight decay."""

import tensorflow as tf

from transformer_tf.training.schedules import make_schedule

# Variables whose names contain these take no weight decay: biases and layer-norm scales
# and offsets.
NO_DECAY = ["bias", "gamma", "beta"]


def make_optimizer(train_config, d_model):
    """The optimizer of `train_config`, with float16 loss scaling when that is the precision.

    Build it (`optimizer.build(model.trainable_variables)`) before restoring a checkpoint:
    Keras 3 creates optimizer slots lazily.
    """
    rate = make_schedule(train_config, d_model)
    common = dict(
        learning_rate=rate,
        beta_1=train_config.adam_beta_1,
        beta_2=train_config.adam_beta_2,
        epsilon=train_config.adam_epsilon,
    )
    if train_config.optimizer == "adamw":
        optimizer = tf.keras.optimizers.AdamW(weight_decay=train_config.weight_decay, **common)
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    else:
        optimizer = tf.keras.optimizers.Adam(**common)
    if train_config.precision == "float16":
        optimizer = tf.keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
