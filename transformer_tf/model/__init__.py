"""The Transformer model and its parts."""

from transformer_tf.model.attention import MultiHeadAttention, scaled_dot_product_attention
from transformer_tf.model.masks import create_look_ahead_mask, create_masks, create_padding_mask
from transformer_tf.model.transformer import Decoder, Encoder, Transformer, build_model

__all__ = [
    "Decoder",
    "Encoder",
    "MultiHeadAttention",
    "Transformer",
    "build_model",
    "create_look_ahead_mask",
    "create_masks",
    "create_padding_mask",
    "scaled_dot_product_attention",
]
