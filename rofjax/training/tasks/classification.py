"""Sentence and sentence-pair classification (CLS pooling), bert4keras style.

Pairs are encoded `[CLS] a [SEP] b [SEP]`; `pair_segment_ids=False` keeps every segment id 0, as the CLUE recipes
of RoFormerV2 and GAU-α do (their pre-training never saw segment 1).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from rofjax.data.tokenizer import Tokenizer
from rofjax.models import ModelConfig, SequenceClassifier
from rofjax.training.optim import residual_alpha


@dataclasses.dataclass
class ClassificationTask:
    model_config: ModelConfig
    tokenizer: Tokenizer
    num_labels: int
    max_length: int = 128
    text_key: str = "text"
    pair_key: str | None = None
    label_key: str = "label"
    pair_segment_ids: bool = False
    alpha_ramp_steps: int = 0
    pooling: str = "cls"

    def __post_init__(self):
        self.model = SequenceClassifier(self.model_config, num_labels=self.num_labels, pooling=self.pooling)

    # Host side ------------------------------------------------------------------------------------------------
    def encode(self, record: dict) -> dict:
        def text(key):
            value = record[key]
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)

        pair = text(self.pair_key) if self.pair_key else None
        ids, segments, _ = self.tokenizer.encode(text(self.text_key), pair, maxlen=self.max_length)
        if not self.pair_segment_ids:
            segments = [0] * len(ids)
        label = int(record[self.label_key])
        if not 0 <= label < self.num_labels:
            raise ValueError(f"label {label} of record {record.get('source', b'?')!r} is outside [0, "
                             f"{self.num_labels}).")
        input_ids = np.zeros(self.max_length, np.int32)
        segment_ids = np.zeros(self.max_length, np.int32)
        input_ids[: len(ids)] = ids
        segment_ids[: len(ids)] = segments
        return {"input_ids": input_ids, "segment_ids": segment_ids, "labels": np.int32(label),
                "weights": np.float32(1.0)}

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "segment_ids": np.zeros((batch_size, self.max_length), np.int32),
                "labels": np.zeros((batch_size,), np.int32), "weights": np.ones((batch_size,), np.float32)}

    def tokens(self, batch) -> int:
        return int(np.sum(np.asarray(batch["input_ids"]) != 0))

    # Device side ----------------------------------------------------------------------------------------------
    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], batch["segment_ids"])["params"]

    def _logits(self, params, batch, *, rng=None, step=None):
        deterministic = rng is None
        kwargs = {}
        if self.model_config.residual_mode == "alpha" and step is not None:
            kwargs["residual_alpha"] = residual_alpha(step, self.alpha_ramp_steps)
        return self.model.apply({"params": params}, batch["input_ids"], batch["segment_ids"],
                                deterministic=deterministic, rngs=None if deterministic else {"dropout": rng},
                                **kwargs)

    def loss(self, params, batch, rng, step):
        return weighted_loss_and_accuracy(self._logits(params, batch, rng=rng, step=step), batch)

    def eval_sums(self, params, batch):
        return weighted_sums(self._logits(params, batch), batch)

    @staticmethod
    def summarize(sums: dict) -> dict:
        count = max(float(sums["count"]), 1e-9)
        return {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count,
                "examples": int(round(float(sums["count"])))}

    def flops_per_example(self) -> float:
        """Training FLOPs of one example (forward + backward ≈ 3 × 2 × matmul FLOPs), encoder only."""
        return 3 * encoder_forward_flops(self.model_config, self.max_length)


def weighted_sums(logits, batch) -> dict:
    """Σ weight·CE, Σ weight·[argmax = label] and Σ weight over a batch (padding rows have weight 0)."""
    weights = batch["weights"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
    correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
    return {"loss": jnp.sum(ce * weights), "correct": jnp.sum(correct * weights), "count": jnp.sum(weights)}


def weighted_loss_and_accuracy(logits, batch):
    sums = weighted_sums(logits, batch)
    denominator = jnp.maximum(sums["count"], 1e-7)
    return sums["loss"] / denominator, {"accuracy": sums["correct"] / denominator}


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


