"""One update: gradient accumulation and clipping against hand computations, and float16
loss scaling."""

import numpy as np
import tensorflow as tf

from transformer_tf.config import load_config
from transformer_tf.model import build_model
from transformer_tf.training.optimizers import make_optimizer
from transformer_tf.training.step import TrainStep

from conftest import QUICKSTART


def _tiny_config(*overrides):
    """The quickstart config with a one-layer, width-32 model over 40 ids, without dropout."""
    model = ["num_layers=1", "d_model=32", "dff=64", "rate=0.0"]
    model += ["input_vocab_size=40", "target_vocab_size=40"]
    fixed = ["train.precision=float32", "train.jit_compile=false"]
    return load_config(QUICKSTART, [f"model.{m}" for m in model] + fixed + list(overrides))


def test_accumulating_two_batches_is_one_batch_twice_as_large():
    config = _tiny_config("train.label_smoothing=0.1", "train.clip_norm=1000.0")
    rng = np.random.default_rng(0)

    def batch(rows, length):
        ids = rng.integers(4, 40, size=(rows, length)).astype(np.int32)
        ids[:, length - 2 :] = np.where(rng.random((rows, 2)) < 0.5, 0, ids[:, length - 2 :])
        return ids

    (s1, t1), (s2, t2) = (batch(3, 7), batch(3, 6)), (batch(3, 5), batch(3, 9))

    def pad(a, b):
        width = max(a.shape[1], b.shape[1])
        return np.concatenate([np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in (a, b)])

    def trained(accumulation):
        tf.keras.utils.set_random_seed(3)
        model = build_model(config.model)
        # Plain gradient descent: the update is the normalised gradient itself.
        optimizer = tf.keras.optimizers.SGD(learning_rate=1.0)
        step = TrainStep(
            model,
            optimizer,
            config.train.__class__(**{**config.train.__dict__, "accumulation_steps": accumulation}),
        )
        if accumulation == 2:
            step.accumulate(s1, t1)
            step.accumulate(s2, t2)
            step.apply_accumulated()
        else:
            step.update(pad(s1, s2), pad(t1, t2))
        return [v.numpy() for v in model.trainable_variables]

    for two, one in zip(trained(2), trained(1)):
        np.testing.assert_allclose(two, one, atol=1e-5)


def test_an_update_clips_the_token_mean_gradient_to_clip_norm():
    config = _tiny_config("train.clip_norm=0.05")
    rng = np.random.default_rng(1)
    source = rng.integers(4, 40, size=(4, 6)).astype(np.int32)
    target = rng.integers(4, 40, size=(4, 7)).astype(np.int32)
    target[0, 5:] = 0  # padding is not a token

    tf.keras.utils.set_random_seed(5)
    model = build_model(config.model)
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:  # the mean over real target tokens, by hand
        logits, _ = model(source, target[:, :-1], training=False)
        labels = target[:, 1:]
        mask = tf.cast(labels != 0, tf.float32)
        losses = tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        ) * (1.0 - config.train.label_smoothing)
        uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)
        losses += config.train.label_smoothing * uniform
        loss = tf.reduce_sum(losses * mask) / tf.reduce_sum(mask)
    expected = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    norm = tf.linalg.global_norm(expected)
    assert norm > 0.05  # so the update must clip
    expected, _ = tf.clip_by_global_norm(expected, 0.05)

    step = TrainStep(model, tf.keras.optimizers.SGD(learning_rate=1.0), config.train)
    reported = step.update(source, target)["grad_norm"]
    np.testing.assert_allclose(reported, norm, rtol=1e-5)
    for b, g, v in zip(before, expected, model.trainable_variables):
        np.testing.assert_allclose(b - v.numpy(), g.numpy(), atol=1e-6)


def _one_update(config, seed=3):
    """The weights after one plain-gradient-descent update of a fresh model, and its metrics."""
    rng = np.random.default_rng(2)
    source = rng.integers(4, 40, size=(4, 6)).astype(np.int32)
    target = rng.integers(4, 40, size=(4, 7)).astype(np.int32)
    target[1, 4:] = 0
    tf.keras.utils.set_random_seed(seed)
    model = build_model(config.model)
    step = TrainStep(model, tf.keras.optimizers.SGD(learning_rate=1.0), config.train)
    metrics = step.update(source, target)
    return [v.numpy() for v in model.trainable_variables], metrics


def test_rdrop_without_dropout_is_a_plain_update_and_with_dropout_pulls_the_copies_together():
    # Without dropout both copies predict alike: no KL, and the mean of two equal losses.
    plain, plain_metrics = _one_update(_tiny_config())
    rdrop, rdrop_metrics = _one_update(_tiny_config("train.rdrop_alpha=5"))
    for a, b in zip(rdrop, plain):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(rdrop_metrics["loss_sum"], plain_metrics["loss_sum"], rtol=1e-5)
    assert float(rdrop_metrics["tokens"]) == float(plain_metrics["tokens"]) == 21.0
    # With dropout the two copies differ, and alpha weighs the KL term into the update.
    dropping = ["model.rate=0.3"]
    weak, _ = _one_update(_tiny_config(*dropping, "train.rdrop_alpha=0.001"))
    strong, _ = _one_update(_tiny_config(*dropping, "train.rdrop_alpha=50"))
    assert max(np.abs(a - b).max() for a, b in zip(weak, strong)) > 1e-3


def test_a_float16_overflow_skips_the_update_and_halves_the_loss_scale():
    config = _tiny_config("train.precision=float16")
    model = build_model(config.model, "float16")
    optimizer = make_optimizer(config.train, config.model.d_model)
    rng = np.random.default_rng(2)
    source = tf.constant(rng.integers(4, 40, size=(4, 6)), tf.int32)
    target = tf.constant(rng.integers(4, 40, size=(4, 7)), tf.int32)
    model(source, target[:, :-1], training=False)
    optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, config.train)
    optimizer.dynamic_scale.assign(1.0)  # no overflow: the update is applied
    step.update(source, target)
    assert int(optimizer.iterations) == 1 and float(optimizer.dynamic_scale) == 1.0
    before = [v.numpy() for v in model.trainable_variables]
    optimizer.dynamic_scale.assign(2.0**60)  # float16 gradients overflow at this scale
    step.update(source, target)
    assert float(optimizer.dynamic_scale) == 2.0**59
    assert int(optimizer.iterations) == 1  # skipped...
    for old, new in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())  # ...and nothing changed
