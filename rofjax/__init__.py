"""rofjax: RoPE, RoFormer/RoFormerV2, GAU-α, GlobalPointer/GPLinker and the ZLPR loss in JAX/Flax."""

__version__ = "0.1.0"


def pipeline(task: str, model, **kwargs):
    """`rofjax.pipelines.pipeline`: the predictor of `task` ("ner", "classification", "relations", "events") for
    an exported model folder, a run folder or a hub id; call it on a string or a list of strings."""
    from rofjax.pipelines import pipeline as build

    return build(task, model, **kwargs)

