"""Model FLOPs of an encoder forward pass, for MFU (2 FLOPs per multiply-add, matmuls only)."""

from __future__ import annotations

from rofjax.models.config import ModelConfig


def encoder_forward_flops(config: ModelConfig, length: int) -> float:
    """Matmul FLOPs of one encoder forward pass over `length` tokens (2 per multiply-add)."""
    H, L, F = config.hidden_size, config.num_layers, config.intermediate_size
    if config.block_type == "gau":
        s = config.resolved_key_size
        per_token = 2 * (H * (2 * F + s) + F * H)
        attention = 2 * length * (s + F)                    # q·k and A·v per query
    else:
        heads, d, k = config.num_heads, config.resolved_head_size, config.resolved_key_size
        per_token = 2 * (H * heads * (2 * k + d) + heads * d * H + 2 * H * F)
        attention = 2 * length * heads * (k + d)
    embed = 2 * config.resolved_embedding_size * H if config.resolved_embedding_size != H else 0
    return float(length * (L * (per_token + attention) + embed))


def global_pointer_flops(config: ModelConfig, length: int, heads: int, head_size: int) -> float:
    """Matmul FLOPs of `heads` GlobalPointer heads (q/k projections and the n × n scores) over `length` tokens."""
    return float(2 * length * config.hidden_size * 2 * head_size * heads + 2 * length * length * head_size * heads)


def encoder_training_flops(config: ModelConfig, length: int) -> float:
    """Matmul FLOPs of the encoder in one training step over `length` tokens: forward + backward ≈ 3 × forward;
    with Ladder Side-Tuning the backbone runs forward only and the side network (and its ladder projections) both
    ways."""
    if config.lst == "none":
        return 3 * encoder_forward_flops(config, length)
    from rofjax.models.ladder import feeding_layers, side_config

    side = side_config(config)
    ladders = 2 * length * config.hidden_size * side.hidden_size * (len(feeding_layers(config)) + 1)
    up = 2 * length * side.hidden_size * config.hidden_size if config.lst == "gated" else 0
    return encoder_forward_flops(config, length) + 3 * (encoder_forward_flops(side, length) + ladders + up)
