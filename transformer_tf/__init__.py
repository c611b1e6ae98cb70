"""transformer_tf: train, evaluate and serve encoder-decoder Transformers on TensorFlow 2 / Keras 3.

The model is importable without loading the training machinery:

    from transformer_tf.model import Transformer
"""

__version__ = "0.1.0"
