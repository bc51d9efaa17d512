"""rofjax: RoPE, RoFormer/RoFormerV2, GAU-α, GlobalPointer/GPLinker and the ZLPR loss in JAX/Flax."""

__version__ = "0.1.0"
