"""One optimizer update, compiled: forward, loss, gradients, clipping, apply; optionally
accumulated over several micro-batches.

The loss of an update is the sum of per-token losses divided by the number of real target
tokens in the whole update (all micro-batches), so accumulating N batches of B sentences is
the same update as one batch of N * B.
"""

import tensorflow as tf

from transformer_tf.training.losses import masked_correct_sum, masked_loss_sum

_BATCH_SPEC = tf.TensorSpec([None, None], tf.int32)


class TrainStep:
    """The compiled update functions for `model` and `optimizer`.

    Call `update(source, target)` when `accumulation_steps` is 1; otherwise
    `accumulate(source, target)` for each micro-batch, then `apply_accumulated()`.
    Each returns a dict of float32 tensors: loss_sum, tokens, correct (and grad_norm for
    the calls that apply an update). One trace serves every batch shape.
    """

    def __init__(self, model, optimizer, train_config):
        self.model = model
        self.optimizer = optimizer
        self.label_smoothing = train_config.label_smoothing
        self.clip_norm = train_config.clip_norm
        self.loss_scaling = isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer)
        compile_batch = tf.function(input_signature=[_BATCH_SPEC, _BATCH_SPEC],
                                    jit_compile=train_config.jit_compile)
        self.update = compile_batch(self._update)
        if train_config.accumulation_steps > 1:
            self._sums = [tf.Variable(tf.zeros_like(v), trainable=False, name="accumulated")
                          for v in model.trainable_variables]
            self._tokens = tf.Variable(0.0, trainable=False, name="accumulated_tokens")
            self.accumulate = compile_batch(self._accumulate)
            self.apply_accumulated = tf.function(self._apply_accumulated,
                                                 jit_compile=train_config.jit_compile)

    def _gradients(self, source, target):
        """Gradients of the summed (not averaged) token losses of one batch."""
        tar_inp, tar_real = target[:, :-1], target[:, 1:]
        with tf.GradientTape() as tape:
            logits, _ = self.model(source, tar_inp, training=True)
            loss_sum, tokens = masked_loss_sum(tar_real, logits, self.label_smoothing)
            scaled = self.optimizer.scale_loss(loss_sum) if self.loss_scaling else loss_sum
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        gradients = [tf.convert_to_tensor(g) for g in gradients]  # embeddings give slices
        metrics = {"loss_sum": loss_sum, "tokens": tokens,
                   "correct": masked_correct_sum(tar_real, logits)}
        return gradients, metrics

    def _apply(self, gradients, tokens):
        """Normalise by the update's real target tokens, clip, apply; return the norm."""
        gradients = [g / tf.maximum(tokens, 1.0) for g in gradients]
        # With float16 loss scaling the gradients are still scaled here; the optimizer
        # unscales them, so the norm and the clipping threshold are scaled alike.
        scale = self.optimizer.dynamic_scale if self.loss_scaling else 1.0
        norm = tf.linalg.global_norm(gradients)
        if self.clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm * scale,
                                                  use_norm=norm)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return norm / scale

    def _update(self, source, target):
        gradients, metrics = self._gradients(source, target)
        metrics["grad_norm"] = self._apply(gradients, metrics["tokens"])
        return metrics

    def _accumulate(self, source, target):
        gradients, metrics = self._gradients(source, target)
        for total, gradient in zip(self._sums, gradients):
            total.assign_add(gradient)
        self._tokens.assign_add(metrics["tokens"])
        return metrics

    def _apply_accumulated(self):
        norm = self._apply([total.read_value() for total in self._sums], self._tokens)
        for total in self._sums:
            total.assign(tf.zeros_like(total))
        self._tokens.assign(0.0)
        return {"grad_norm": norm}
