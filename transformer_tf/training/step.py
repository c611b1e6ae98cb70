"""One optimizer update, compiled: forward, loss, gradients, clipping, apply; optionally
accumulated over several micro-batches; on any `tf.distribute` strategy.

The loss of an update is the sum of per-token losses divided by the number of real target
tokens in the whole update (all micro-batches, all replicas), so neither accumulating N
batches of B sentences nor splitting a batch over N replicas changes the update.

With R-Drop (`train.rdrop_alpha`) each batch goes through the model twice in one call (the
batch stacked on itself, so every row gets its own dropout); the loss is the paper's,
halved: the mean of the two copies' token losses plus alpha / 2 times their symmetric KL
divergence (its half-sum), so the loss logged and the clipping threshold keep their scale.
"""

import tensorflow as tf

from transformer_tf.training.losses import (
    masked_correct_sum,
    masked_loss_sum,
    masked_symmetric_kl_sum,
)

_BATCH_SPEC = tf.TensorSpec([None, None], tf.int32)
_SUM = tf.distribute.ReduceOp.SUM


class TrainStep:
    """The compiled update functions for `model` and `optimizer` (made in `strategy`'s
    scope).

    Call `update(source, target)` when `accumulation_steps` is 1; otherwise
    `accumulate(source, target)` for each micro-batch, then `apply_accumulated()`. Inputs
    are batches, or with several replicas the per-replica values of a distributed dataset
    (`batch_spec`: its `element_spec`). Each returns a dict of float32 tensors summed over
    replicas: loss_sum, tokens, correct (and grad_norm for the calls that apply an
    update). One trace serves every batch shape.
    """

    def __init__(self, model, optimizer, train_config, strategy=None, batch_spec=None):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.label_smoothing = train_config.label_smoothing
        self.rdrop_alpha = train_config.rdrop_alpha
        self.clip_norm = train_config.clip_norm
        self.loss_scaling = isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer)
        if train_config.jit_compile == "auto":
            raise ValueError("train.jit_compile auto is chosen by the Runner: pass True or False.")
        compile_batch = tf.function(
            input_signature=list(batch_spec or (_BATCH_SPEC,) * 2),
            jit_compile=train_config.jit_compile,
        )
        self.update = compile_batch(self._distributed(self._update))
        if train_config.accumulation_steps > 1:
            with self.strategy.scope():
                # Each replica sums its own micro-batches; the sums meet at the update.
                local = {
                    "synchronization": tf.VariableSynchronization.ON_READ,
                    "aggregation": tf.VariableAggregation.SUM,
                    "trainable": False,
                }
                self._sums = [
                    tf.Variable(tf.zeros_like(v), name="accumulated", **local)
                    for v in model.trainable_variables
                ]
                self._tokens = tf.Variable(0.0, name="accumulated_tokens", **local)
            self.accumulate = compile_batch(self._distributed(self._accumulate))
            self.apply_accumulated = tf.function(
                self._distributed(self._apply_accumulated), jit_compile=train_config.jit_compile
            )

    def traces(self):
        """How often an update function was traced at most, for the log: "once" is what a
        run should show, whatever its batch shapes (XLA still compiles once per shape)."""
        functions = [
            self.update,
            getattr(self, "accumulate", None),
            getattr(self, "apply_accumulated", None),
        ]
        count = max(f.experimental_get_tracing_count() for f in functions if f is not None)
        return "once" if count == 1 else f"{count} times"

    def _distributed(self, replica_fn):
        """`replica_fn` run on every replica, its metrics summed over replicas."""
        strategy = self.strategy

        def run(*batch):
            metrics = strategy.run(replica_fn, args=batch)
            summed = {
                key: strategy.reduce(_SUM, value, axis=None)
                for key, value in metrics.items()
                if key != "grad_norm"
            }
            if "grad_norm" in metrics:  # the same on every replica
                summed["grad_norm"] = strategy.experimental_local_results(metrics["grad_norm"])[0]
            return summed

        return run

    def _gradients(self, source, target):
        """Gradients of the summed (not averaged) token losses of one batch."""
        tar_inp, tar_real = target[:, :-1], target[:, 1:]
        with tf.GradientTape() as tape:
            if self.rdrop_alpha:
                source2, inp2, real2 = (
                    tf.concat([x, x], axis=0) for x in (source, tar_inp, tar_real)
                )
                both, _ = self.model(source2, inp2, training=True)
                both_sum, both_tokens = masked_loss_sum(real2, both, self.label_smoothing)
                loss_sum, tokens = both_sum / 2.0, both_tokens / 2.0  # the copies' mean
                logits, other = tf.split(both, 2, axis=0)
                kl_sum = masked_symmetric_kl_sum(tar_real, logits, other)
                objective = loss_sum + self.rdrop_alpha / 2.0 * kl_sum
            else:
                logits, _ = self.model(source, tar_inp, training=True)
                loss_sum, tokens = masked_loss_sum(tar_real, logits, self.label_smoothing)
                objective = loss_sum
            scaled = self.optimizer.scale_loss(objective) if self.loss_scaling else objective
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        gradients = [tf.convert_to_tensor(g) for g in gradients]  # embeddings give slices
        metrics = {
            "loss_sum": loss_sum,
            "tokens": tokens,
            "correct": masked_correct_sum(tar_real, logits),
        }
        return gradients, metrics

    def _apply(self, gradients, tokens):
        """In each replica: sum the gradients and token counts of all replicas, normalise
        by the tokens, clip, apply; return the norm."""
        context = tf.distribute.get_replica_context()
        tokens, gradients = context.all_reduce(_SUM, [tokens, gradients])
        gradients = [g / tf.maximum(tokens, 1.0) for g in gradients]
        # With float16 loss scaling the gradients are still scaled here; the optimizer
        # unscales them, so the norm and the clipping threshold are scaled alike.
        scale = self.optimizer.dynamic_scale if self.loss_scaling else 1.0
        norm = tf.linalg.global_norm(gradients)
        if self.clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm * scale, use_norm=norm)
        # Keras 3 optimizers sum gradients over replicas once more: hand each replica its
        # share of the total, so the sum is the total again.
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            gradients = [g / replicas for g in gradients]
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
        norm = self._apply([total.read_value() for total in self._sums], self._tokens.read_value())
        for total in self._sums:
            total.assign(tf.zeros_like(total))
        self._tokens.assign(0.0)
        return {"grad_norm": norm}
