"""The custom training loop: tokenizers, model, optimizer, checkpoints, TensorBoard.

Re-running the same config resumes from the latest checkpoint at the same step and
data position.
"""

import dataclasses
import logging
import time

import tensorflow as tf

from transformer_tf.data.pipeline import train_dataset
from transformer_tf.data.sources import load_splits
from transformer_tf.data.tokenizers import build_or_load_tokenizers
from transformer_tf.run import (RunDir, build_model, check_same_model, resolve_model_config,
                                write_config)
from transformer_tf.training.losses import masked_correct_sum, masked_loss_sum
from transformer_tf.training.schedules import NoamSchedule

log = logging.getLogger(__name__)

_BATCH_SPEC = tf.TensorSpec([None, None], tf.int32)


def make_optimizer(train_config, d_model):
    schedule = NoamSchedule(d_model, train_config.warmup_steps, train_config.learning_rate_scale)
    return tf.keras.optimizers.Adam(schedule, beta_1=train_config.adam_beta_1,
                                    beta_2=train_config.adam_beta_2,
                                    epsilon=train_config.adam_epsilon)


def make_train_step(model, optimizer, label_smoothing):
    """A compiled step: (source, target) batch -> (loss sum, real target tokens, correct).

    One trace serves every batch shape (the signature has unknown lengths).
    """

    @tf.function(input_signature=[_BATCH_SPEC, _BATCH_SPEC])
    def train_step(source, target):
        tar_inp, tar_real = target[:, :-1], target[:, 1:]
        with tf.GradientTape() as tape:
            logits, _ = model(source, tar_inp, training=True)
            loss_sum, tokens = masked_loss_sum(tar_real, logits, label_smoothing)
            loss = loss_sum / tf.maximum(tokens, 1.0)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss_sum, tokens, masked_correct_sum(tar_real, logits)

    return train_step


def _format_seconds(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def train(config):
    """Train (or resume) the run of `config`. Returns the resolved config."""
    run = RunDir(config.run_dir)
    tf.keras.utils.set_random_seed(config.train.seed)
    splits = load_splits(config.data)
    source_tokenizer, target_tokenizer = build_or_load_tokenizers(
        config.tokenizer, *splits["train"], run.vocab)
    config = dataclasses.replace(config, model=resolve_model_config(
        config.model, source_tokenizer.vocab_size, target_tokenizer.vocab_size))
    check_same_model(config.run_dir, config)
    write_config(config.run_dir, config)

    model = build_model(config.model)
    optimizer = make_optimizer(config.train, config.model.d_model)
    # Keras 3 creates optimizer slots lazily; build them so a restore fills every one.
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints),
                                         max_to_keep=config.train.keep_checkpoints)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resumed from %s at step %d", manager.latest_checkpoint,
                 int(optimizer.iterations))
    step = int(optimizer.iterations)
    total = config.train.steps
    if step >= total:
        log.info("already trained: step %d of %d", step, total)
        return config

    params = sum(int(tf.size(v)) for v in model.trainable_variables)
    log.info("training %s parameters, step %d -> %d, vocabularies %d / %d", f"{params:,}", step,
             total, config.model.input_vocab_size, config.model.target_vocab_size)
    dataset = train_dataset(*splits["train"], source_tokenizer, target_tokenizer, config.data,
                            seed=config.train.seed, start_batch=step,
                            num_batches=total - step)
    train_step = make_train_step(model, optimizer, config.train.label_smoothing)
    writer = tf.summary.create_file_writer(str(run.train_logs))
    window = {"loss": 0.0, "tokens": 0.0, "correct": 0.0}
    window_start = run_start = time.perf_counter()
    start_step = step
    for source, target in dataset:
        loss_sum, tokens, correct = train_step(source, target)
        step += 1
        window["loss"] += float(loss_sum)
        window["tokens"] += float(tokens)
        window["correct"] += float(correct)
        if step % config.train.log_every == 0 or step == total:
            now = time.perf_counter()
            loss = window["loss"] / max(window["tokens"], 1.0)
            accuracy = window["correct"] / max(window["tokens"], 1.0)
            rate = float(optimizer.learning_rate)
            tokens_per_second = window["tokens"] / (now - window_start)
            eta = (now - run_start) / (step - start_step) * (total - step)
            log.info("step %d/%d  loss %.4f  accuracy %.3f  lr %.2e  %s tokens/s  eta %s",
                     step, total, loss, accuracy, rate, f"{tokens_per_second:,.0f}",
                     _format_seconds(eta))
            with writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)
                tf.summary.scalar("learning_rate", rate)
                tf.summary.scalar("tokens_per_second", tokens_per_second)
            window = dict.fromkeys(window, 0.0)
            window_start = now
        if step % config.train.checkpoint_every == 0 or step == total:
            path = manager.save(checkpoint_number=step)
            log.info("saved checkpoint %s", path)
    writer.flush()
    log.info("trained to step %d in %s", step, _format_seconds(time.perf_counter() - run_start))
    return config
