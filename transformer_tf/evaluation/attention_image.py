"""Attention weights as an image, for TensorBoard and `translate --attention`."""

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("transformer_tf")


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


def save_attention_png(translator, sentence, path, cell=16):
    """Translate `sentence` with `translator` and write the encoder-decoder attention of
    its last decoder layer to `path` as a PNG (`attention_image`). Returns the
    translation."""
    import tensorflow as tf

    result = translator.attention(sentence)
    last = list(result["attention"].values())[-1]  # [heads, target_len, source_len]
    Path(path).write_bytes(tf.io.encode_png(attention_image(last, cell)[0]).numpy())
    log.info(
        "attention of the last decoder layer (%d heads, target tokens down, source tokens "
        "across) written to %s",
        last.shape[0],
        path,
    )
    return result["translation"]
