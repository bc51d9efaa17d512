"""Host-side decoders: numpy only (importing them never imports jax)."""

from rofjax.decode.events import (
           EventSteps,
           extract_events,
           extract_events_batch,
           extract_events_steps,
           maximal_cliques,
)
from rofjax.decode.relations import extract_triples, extract_triples_batch
from rofjax.decode.spans import extract_spans, extract_spans_batch, span_prf, spans_to_chars, windows

__all__ = ["EventSteps", "extract_events", "extract_events_batch", "extract_events_steps", "extract_spans", "extract_spans_batch", "extract_triples",
           "extract_triples_batch", "maximal_cliques", "span_prf", "spans_to_chars", "windows"]
