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
        rate = tf.math.minimum(tf.math.rsqrt(step), step * self.warmup_steps ** -1.5)
        return self.scale * self.d_model ** -0.5 * rate

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "scale": self.scale}
