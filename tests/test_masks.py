"""Masks in the convention of the paper's code: 1.0 marks what must not be attended to."""

import numpy as np
import tensorflow as tf

from transformer_tf.model import create_look_ahead_mask, create_padding_mask


def test_mask_helpers():
    np.testing.assert_array_equal(create_padding_mask(tf.constant([[4, 0]]))[0, 0, 0], [0, 1])
    np.testing.assert_array_equal(create_look_ahead_mask(3), [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
