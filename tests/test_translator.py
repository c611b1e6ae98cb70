"""The Translator: what the decoder attended to, as numbers and as an image."""

import numpy as np
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.runner import Runner


def test_attention_image(trained_run, tmp_path, capsys):
    image = tmp_path / "attention.png"
    assert (
        main(
            [
                "translate",
                "--run-dir",
                str(trained_run),
                "--attention",
                str(image),
                "The cat sat on the mat.",
            ]
        )
        == 0
    )
    pixels = tf.io.decode_png(image.read_bytes()).numpy()
    assert pixels.shape[0] > 16 and pixels.shape[1] > 2 * pixels.shape[0] // 4
    assert pixels.min() < 128  # some attention is drawn
    translator = Runner.from_run_dir(trained_run).translator()
    attention = translator.attention("The cat sat on the mat.")
    weights = attention["attention"]["decoder_layer1_block2"]
    assert weights.shape == (2, len(attention["target_tokens"]), len(attention["source_tokens"]))
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    source_length = len(attention["source_tokens"])
    encoder = attention["encoder_attention"]["encoder_layer1"]
    assert encoder.shape == (2, source_length, source_length)
    np.testing.assert_allclose(encoder.sum(-1), 1.0, rtol=1e-5)
    assert capsys.readouterr().out.strip() == attention["translation"]
