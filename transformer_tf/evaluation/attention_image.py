"""Attention weights as an image, for TensorBoard and `translate --attention`."""

from pathlib import Path

import numpy as np


def attention_image(weights, cell=8):
    """[heads, target_len, source_len] weights in [0, 1] -> [1, H, W, 1] uint8 image.

    Heads stand side by side, left to right, separated by a white column; each weight is a
    `cell` x `cell` square, darker for more attention (target tokens down, source across).
    """
    heads, rows, cols = weights.shape
    squares = np.kron(np.asarray(weights, np.float32), np.ones((1, cell, cell), np.float32))
    pixels = (255 * (1.0 - np.clip(squares, 0.0, 1.0))).astype(np.uint8)
    separator = np.full((rows * cell, 2), 255, np.uint8)
    row = np.concatenate([part for head in pixels for part in (head, separator)][:-1], axis=1)
    return row[np.newaxis, :, :, np.newaxis]


def save_attention_png(weights, path, cell=16):
    """Write `attention_image(weights, cell)` to `path` as a PNG file."""
    import tensorflow as tf

    png = tf.io.encode_png(attention_image(weights, cell)[0])
    Path(path).write_bytes(png.numpy())
