"""Learning-rate schedules."""

import tensorflow as tf


class NoamSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """The paper's schedule (section 5.3): linear warm-up, then inverse square root.

    lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), step from 1.

    Args:
        d_model: int, model width.
        warmup_steps: int, steps of linear warm-up. Defaults to 4000.
        scale: float, multiplies the rate. Defaults to 1.0.
    """

    def __init__(self, d_model, warmup_steps=4000, scale=1.0):
        super().__init__()
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        self.scale = scale

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0  # Keras counts optimizer steps from 0
        rate = tf.math.minimum(tf.math.rsqrt(step), step * self.warmup_steps**-1.5)
        return self.scale * self.d_model**-0.5 * rate

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "scale": self.scale}


class InverseSqrtSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then `peak * sqrt(warmup_steps / step)` (fairseq's
    inverse_sqrt): the paper's shape with the peak rate given directly.

    Args:
        peak: float, learning rate at the end of warm-up.
        warmup_steps: int, steps of linear warm-up.
    """

    def __init__(self, peak, warmup_steps):
        super().__init__()
        self.peak = peak
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = float(self.warmup_steps)
        return self.peak * tf.math.minimum(step / warmup, tf.math.sqrt(warmup / step))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


class CooldownSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """`base` for the first `total_steps - cooldown_steps` steps, then `base` times a factor
    falling linearly to 0 at `total_steps` (a decay to zero at the end of training, where
    inverse square root leaves the rate well above it).

    Args:
        base: a schedule, or a constant rate.
        total_steps: int, the steps of the whole training.
        cooldown_steps: int, the last steps, over which the rate falls to 0.
    """

    def __init__(self, base, total_steps, cooldown_steps):
        super().__init__()
        self.base = base
        self.total_steps = total_steps
        self.cooldown_steps = cooldown_steps

    def __call__(self, step):
        rate = self.base(step) if callable(self.base) else self.base
        left = float(self.total_steps) - tf.cast(step, tf.float32)  # steps from here to the end
        return rate * tf.clip_by_value(left / self.cooldown_steps, 0.0, 1.0)

    def get_config(self):
        base = self.base.get_config() if callable(self.base) else self.base
        return {
            "base": base,
            "total_steps": self.total_steps,
            "cooldown_steps": self.cooldown_steps,
        }


def make_schedule(train_config, d_model):
    """The learning rate (a schedule or a constant) named by `train.schedule`, falling to 0
    over the last `train.cooldown_steps` when that is set."""
    if train_config.schedule == "noam":
        rate = NoamSchedule(d_model, train_config.warmup_steps, train_config.learning_rate_scale)
    elif train_config.schedule == "inverse_sqrt":
        rate = InverseSqrtSchedule(train_config.learning_rate, train_config.warmup_steps)
    else:
        rate = train_config.learning_rate
    if train_config.cooldown_steps:
        return CooldownSchedule(rate, train_config.steps, train_config.cooldown_steps)
    return rate
