"""Helpers shared by the router families: the embedding-router base, score matrices, shrunk
means and the confidence rule.

Confidence, for every router here: the probability that the predicted outcome (a good answer
when quality >= 0.5, a bad one otherwise) is what happens, ``max(q, 1 - q)``, discounted by the
evidence behind ``q`` when the router knows it: ``* n / (n + kappa)`` where ``n`` is the
(effective) number of observed answers the estimate rests on. With plenty of evidence it is
the prior router's rule; with little, a cascade escalates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query, Router
from coe_gateway.routers.embedding import EncoderSpec, embed_texts
from coe_gateway.routers.neural import TrainOptions, sigmoid

Progress = Callable[[int, int], None]


def expert_columns(records: RecordSet, experts: Sequence[str] | None) -> list[str]:
    """The experts a router is trained for (ValueError naming any not in the records)."""
    names = list(experts or records.models)
    unknown = [e for e in names if e not in records.models]
    if unknown:
        raise ValueError(f"experts not in the training records: {unknown}; "
                         f"the records have {records.models}")
    return names


def score_matrix(records: RecordSet, experts: Sequence[str],
                 missing: float | None = 0.0) -> np.ndarray:
    """(N, E) scores of ``experts``; a missing result counts as ``missing`` (default 0, as the
    evaluator counts it: a model that gave no graded answer earns nothing), or stays NaN and
    is left out of training when ``missing`` is None. Records where no expert has a result
    stay NaN either way."""
    s = records.scores[:, [records.models.index(e) for e in experts]].astype(np.float64)
    if missing is None:
        return s
    any_result = np.isfinite(s).any(axis=1, keepdims=True)
    return np.where(np.isfinite(s) | ~any_result, s, float(missing))


def shrunk_mean(total: np.ndarray, count: np.ndarray, prior: np.ndarray,
                kappa: float) -> np.ndarray:
    """(total + kappa * prior) / (count + kappa): a mean pulled towards ``prior`` when thin."""
    return (total + kappa * prior) / (count + kappa)


def confidence(quality: np.ndarray, evidence: np.ndarray | None = None,
               kappa: float = 4.0) -> np.ndarray:
    """``max(q, 1 - q)``, times ``n / (n + kappa)`` when the evidence ``n`` is known."""
    conf: np.ndarray = np.maximum(quality, 1.0 - quality)
    if evidence is not None:
        conf = conf * evidence / (evidence + kappa)
    return np.clip(conf, 0.0, 1.0)


def column_means(scores: np.ndarray, fill: float = 0.5) -> np.ndarray:
    """(E,) mean of each column ignoring NaN; ``fill`` for an empty column."""
    count = np.isfinite(scores).sum(axis=0)
    total = np.nansum(scores, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), fill)


class EmbeddingRouter(Router):
    """A router whose features are the query text's embedding (see
    :mod:`coe_gateway.routers.embedding`). The encoder spec is part of the saved config."""

    def __init__(self, experts: Sequence[str],
                 encoder: Mapping[str, Any] | EncoderSpec | None = None) -> None:
        super().__init__(experts)
        self.encoder = EncoderSpec.from_config(encoder)

    def embed(self, queries: Sequence[Query]) -> np.ndarray:
        """(B, D) unit vectors of the queries' texts."""
        return embed_texts([q.text for q in queries], self.encoder)

    def config(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_config()}

    @classmethod
    def from_saved(cls, experts: Sequence[str], config: Mapping[str, Any],
                   arrays: Mapping[str, np.ndarray]) -> Router:
        """Constructor keywords: the saved config plus one per saved array."""
        array_kwargs: dict[str, Any] = dict(arrays)
        return cls(experts, **dict(config), **array_kwargs)


class LogitsRouter(EmbeddingRouter):
    """An embedding router with one numpy logit per expert, temperature-scaled into the
    probability of a good answer (the learned predictors ``mlp`` and ``mf``)."""

    temperature: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, E) uncalibrated logits of embeddings x (B, D)."""
        raise NotImplementedError

    def predict(self, queries: Sequence[Query]) -> Prediction:
        p = sigmoid(self.logits(self.embed(queries)) / self.temperature).astype(np.float64)
        return Prediction(self.experts, p, confidence(p))


def training_inputs(train: RecordSet, experts: Sequence[str] | None,
                    options: Mapping[str, Any]) -> tuple[dict[str, Any], TrainOptions,
                                                         list[str], np.ndarray]:
    """What a learned predictor's ``fit`` starts from: its remaining options (the
    :class:`TrainOptions` fields taken out), those training options, the expert columns and
    the training queries' embeddings (N, D) under ``options["encoder"]``."""
    opts = dict(options)
    topts = TrainOptions.pick(opts)
    names = expert_columns(train, experts)
    return opts, topts, names, embed_records(train, opts.get("encoder"))


def embed_records(records: RecordSet, encoder: Mapping[str, Any] | EncoderSpec | None,
                  progress: Progress | None = None) -> np.ndarray:
    """(N, D) embeddings of the records' routing texts (through the disk cache)."""
    return embed_texts([q.text for q in records.queries()], encoder, progress)


def as_float16(x: np.ndarray) -> np.ndarray:
    """A compact copy for ``weights.safetensors`` (NaN kept)."""
    return np.ascontiguousarray(x, dtype=np.float16)
