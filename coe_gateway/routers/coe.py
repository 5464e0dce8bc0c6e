"""Composition of Experts (SambaNova's CoE), two steps: a category classifier on the query's
embedding, then a category-to-expert table (:mod:`coe_gateway.routers.coe_table`).

Step 1, the classifier: multinomial logistic regression on embeddings, trained on the
training records' categories plus any labelled query files (``label_files``: JSONL with
``prompt`` and ``category``, e.g. the Arena-Hard and MT-Bench labels in
``shared/data/categories``). At query time it is a matrix product and a softmax (no sklearn,
no torch). A query that carries a known category (``Query.category``) uses it directly when
``trust_query_category`` is on.

Step 2, the table. ``mode: table`` (default): the table's expert for the predicted category
gets that category's quality; every other expert is reported just below it (its own category
quality, capped at the pick's minus 0.001), so a quality-first policy follows the table and a
cost-aware policy can still trade down. When the classifier's top probability is below the
table's ``min_confidence`` the general expert takes the pick's place. ``mode: soft``: no
table; quality is sum_c p(c | query) * quality[c, e] for every expert (the policy decides).

Confidence: the classifier's probability of the category used (1 for a trusted label),
scaled by the evidence behind that category's quality; for the general-expert fallback, the
evidence of all categories.

Saved arrays: ``coef`` (C, D), ``intercept`` (C,), ``cat_quality`` (C, E), ``cat_counts``
(C, E); config: ``labels`` (C names), ``table``, ``mode``, ``trust_query_category``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from coe_gateway.records import RecordSet, iter_jsonl
from coe_gateway.routers.base import Prediction, Query
from coe_gateway.routers.coe_table import Budget, CategoryTable, build_table
from coe_gateway.routers.common import (EmbeddingRouter, column_means, confidence,
                                        embed_records, expert_columns, score_matrix,
                                        shrunk_mean)
from coe_gateway.routers.embedding import EncoderSpec, embed_texts
from coe_gateway.routers.facts import active_params, estimated_costs, load_facts

MARGIN = 1e-3


def read_labelled(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """(texts, categories) of labelled query files (JSONL with ``prompt`` and ``category``)."""
    texts, labels = [], []
    for path in paths:
        for n, obj in iter_jsonl(path):
            if not isinstance(obj.get("prompt"), str) or not isinstance(obj.get("category"), str):
                raise ValueError(f"{path}:{n}: a labelled query needs string 'prompt' and "
                                 "'category'")
            texts.append(obj["prompt"])
            labels.append(obj["category"])
    return texts, labels


def fit_classifier(x: np.ndarray, labels: Sequence[str], c: float = 10.0,
                   seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Multinomial logistic regression: (label names, coef (C, D), intercept (C,))."""
    from sklearn.linear_model import LogisticRegression

    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError(f"coe: the classifier needs at least 2 categories, got {names}")
    y = np.array([names.index(v) for v in labels])
    clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x, y)
    return names, clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    p: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return p


def category_stats(records: RecordSet, experts: Sequence[str], labels: Sequence[str],
                   kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-category quality (C, E), shrunk to each expert's mean, and result counts (C, E)."""
    s = score_matrix(records, experts)  # (N, E)
    cats = np.array([labels.index(c) if c in labels else -1 for c in records.categories])
    onehot = (cats[:, None] == np.arange(len(labels))[None, :]).astype(np.float64)  # (N, C)
    counts = onehot.T @ np.isfinite(s)
    quality = shrunk_mean(onehot.T @ np.nan_to_num(s), counts, column_means(s)[None, :], kappa)
    return quality, counts


class CoERouter(EmbeddingRouter):
    kind = "coe"

    def __init__(
        self, experts: Sequence[str], encoder: Mapping[str, Any] | EncoderSpec | None = None,
        labels: Sequence[str] = (), table: Mapping[str, Any] | None = None, mode: str = "table",
        trust_query_category: bool = True, kappa: float = 5.0,
        coef: np.ndarray | None = None, intercept: np.ndarray | None = None,
        cat_quality: np.ndarray | None = None, cat_counts: np.ndarray | None = None,
    ) -> None:
        super().__init__(experts, encoder)
        if mode not in ("table", "soft"):
            raise ValueError(f"coe: mode must be 'table' or 'soft', got {mode!r}")
        if coef is None or intercept is None or cat_quality is None or cat_counts is None:
            raise ValueError("coe: needs a trained classifier and category qualities (use fit)")
        self.labels = list(labels)
        if coef.shape[0] != len(self.labels) or cat_quality.shape != (len(self.labels),
                                                                      len(self.experts)):
            raise ValueError(f"coe: arrays do not match {len(self.labels)} labels x "
                             f"{len(self.experts)} experts")
        self.table = CategoryTable.from_dict(table or {}, self.experts)
        self.mode, self.trust_query_category = mode, bool(trust_query_category)
        self.kappa = float(kappa)
        self.coef, self.intercept = np.asarray(coef, np.float32), np.asarray(intercept, np.float32)
        self.cat_quality = np.asarray(cat_quality, np.float64)  # (C, E)
        self.cat_counts = np.asarray(cat_counts, np.float64)  # (C, E)

    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            **options: Any) -> CoERouter:
        """Classifier on labelled embeddings, per-category quality, then the table.

        Options besides the constructor's: ``label_files`` (labelled query JSONL),
        ``classifier_c`` (inverse L2 strength), ``models_json``, ``prices``,
        ``active_params_b`` (for costs and budgets), ``param_budget`` ({kind: total|average,
        value: billions}), ``cost_weight`` (quality points per 1e-3 USD), ``min_confidence``,
        ``general_expert``.
        """
        opts = dict(options)
        names = expert_columns(train, experts)
        enc = EncoderSpec.from_config(opts.get("encoder"))
        x = embed_records(train, enc)
        keep = [i for i, c in enumerate(train.categories) if c]
        texts, extra = read_labelled(list(opts.pop("label_files", []) or []))
        xs = [x[keep]] + ([embed_texts(texts, enc)] if texts else [])
        # keep holds only the records with a category
        labels_all = [cast(str, train.categories[i]) for i in keep] + extra
        if not labels_all:
            raise ValueError("coe: no labelled queries (records without categories and no "
                             "label_files)")
        labels, coef, intercept = fit_classifier(np.concatenate(xs), labels_all,
                                                 float(opts.pop("classifier_c", 10.0)))
        kappa = float(opts.get("kappa", 5.0))
        quality, counts = category_stats(train, names, labels, kappa)
        opts["table"] = cls._table(train, names, labels, quality, opts).to_dict()
        return cls(names, labels=labels, coef=coef, intercept=intercept, cat_quality=quality,
                   cat_counts=counts, **opts)

    @staticmethod
    def _table(train: RecordSet, names: list[str], labels: list[str], quality: np.ndarray,
               opts: dict[str, Any]) -> CategoryTable:
        facts = load_facts(opts.pop("models_json", None))
        override = opts.pop("active_params_b", None)
        costs = estimated_costs(train, names, facts, opts.pop("prices", None), override)
        per_query = np.array([sum(c == lab for c in train.categories) for lab in labels],
                             dtype=np.float64)
        cat_cost = None
        if costs is not None:
            cat_cost = np.stack([costs[[c == lab for c in train.categories]].mean(axis=0)
                                 if n else costs.mean(axis=0) for lab, n in zip(labels, per_query)])
        return build_table(
            labels, names, quality, per_query, cat_cost, active_params(names, facts, override),
            Budget.parse(opts.pop("param_budget", None)), float(opts.pop("cost_weight", 0.0)),
            float(opts.pop("min_confidence", 0.5)), opts.pop("general_expert", None))

    def category_probs(self, queries: Sequence[Query]) -> np.ndarray:
        """(B, C) classifier probabilities; a trusted known category is one-hot."""
        known = [self.trust_query_category and q.category in self.labels for q in queries]
        probs = np.zeros((len(queries), len(self.labels)))
        todo = [i for i, k in enumerate(known) if not k]
        if todo:
            x = self.embed([queries[i] for i in todo])  # (b, D)
            probs[todo] = softmax(x @ self.coef.T + self.intercept)
        for i, q in enumerate(queries):
            if known[i]:
                # known: the query's category is one of the labels (so not None)
                probs[i, self.labels.index(cast(str, q.category))] = 1.0
        return probs

    def predict(self, queries: Sequence[Query]) -> Prediction:
        probs = self.category_probs(queries)  # (B, C)
        if self.mode == "soft":
            q = probs @ self.cat_quality
            return Prediction(self.experts, q, confidence(q, probs @ self.cat_counts, self.kappa)
                              * probs.max(axis=1, keepdims=True))
        top = probs.argmax(axis=1)  # (B,)
        sure = probs[np.arange(len(top)), top]  # (B,)
        q = self.cat_quality[top].copy()  # (B, E)
        evidence = self.cat_counts[top].copy()  # (B, E)
        overall = column_means(self.cat_quality)
        for b, c in enumerate(top):
            label = self.labels[c]
            if sure[b] >= self.table.min_confidence and label in self.table.categories:
                pick = self.experts.index(self.table.expert_for(label))
            else:  # the general expert, judged on everything seen
                pick = self.experts.index(self.table.general_expert)
                q[b], evidence[b], sure[b] = overall, self.cat_counts.sum(axis=0), 1.0
            q[b] = np.minimum(q[b], q[b, pick] - MARGIN)
            q[b, pick] += MARGIN
        q = np.clip(q, 0.0, 1.0)
        conf = confidence(q, evidence, self.kappa) * sure[:, None]
        return Prediction(self.experts, q, conf)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "labels": self.labels, "mode": self.mode,
                "trust_query_category": self.trust_query_category, "kappa": self.kappa,
                "table": self.table.to_dict()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept,
                "cat_quality": self.cat_quality.astype(np.float32),
                "cat_counts": self.cat_counts.astype(np.float32)}
