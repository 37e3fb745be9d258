"""Decoders for a query set (CrossMAE cross-attention, standard self-attention) and prediction heads."""

from mae_domains.models.decoding.cross_attention import CrossAttention, CrossAttentionBlock, CrossAttentionDecoder
from mae_domains.models.decoding.heads import DensePixelHead, LinearHead, RoutedHead
from mae_domains.models.decoding.self_attention import SelfAttentionDecoder

__all__ = [
    "CrossAttention", "CrossAttentionBlock", "CrossAttentionDecoder", "DensePixelHead", "LinearHead",
    "RoutedHead", "SelfAttentionDecoder",
]
