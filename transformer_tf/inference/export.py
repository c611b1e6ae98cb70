"""Export a trained run as a SavedModel that needs only TensorFlow and tensorflow-text."""

import tensorflow as tf


def export_saved_model(translator, directory):
    """Save `translator` with its `serving_default` signature (strings -> translations)."""
    signature = translator.__call__.get_concrete_function()
    tf.saved_model.save(translator, str(directory), signatures={"serving_default": signature})
    return directory
