"""Profile-conditioned router (RouteProfile): one scorer shared by every model, conditioned on
each model's profile (:mod:`coe_gateway.profiles.profile`), so a model absent from training
is routed to from its profile alone.

The *frame* every profile refers to: the query model (embedding, category classifier,
difficulty predictor; :mod:`coe_gateway.routers.querymodel`), ``K`` k-means centroids of the
training queries and ``B`` difficulty bands (quantiles of predicted difficulty). For a query
q and a model m, the scorer reads m's profile where q falls::

    f_all  = logit(m's overall quality)
    f_cat  = sum_c p(c | q) * logit(m's quality on category c)
    f_clu  = logit(m's quality on q's cluster)
    f_band = logit(m's quality on q's difficulty band)
    phi    = [f_all, f_cat, f_clu, f_band, d, d^2, f_all*d, f_cat*d, f_band*d]
    P(good answer | q, m) = sigmoid(w . phi + b)

Group qualities are shrunk towards the model's overall quality (``kappa`` pseudo-results),
so a thin profile (5% of a model's records) speaks cautiously. ``w`` is trained on the
training models, each profiled from a random fraction of its training records (5% to 50%)
and scored on the rest: the scorer learns how far a profile of that size can be trusted.

Saved arrays: the query model's ``qm.*``, ``centroids`` (K, D), ``band_edges`` (B + 1,),
``scorer`` (F + 1,), and per expert ``prof.*`` sums and counts; config: the frame id and
each expert's profile source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.profiles.profile import Profile, build_profile
from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query, Router
from coe_gateway.routers.cluster import kmeans
from coe_gateway.routers.common import confidence, expert_columns, score_matrix
from coe_gateway.routers.facts import estimated_costs, load_facts
from coe_gateway.routers.irt import fit_logistic
from coe_gateway.routers.neural import sigmoid
from coe_gateway.routers.querymodel import QueryFeatures, QueryModel

GROUPS = ("cat", "clu", "band")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    z: np.ndarray = np.log(p / (1 - p))
    return z


def recorded_latency(records: RecordSet, model: str) -> np.ndarray | None:
    """(N,) seconds per answer from ``meta.latency_s[model]`` where recorded, else None."""
    values = [(m.get("latency_s") or {}).get(model) if isinstance(m, dict) else None
              for m in (records.meta or [])]
    if not any(isinstance(v, (int, float)) for v in values):
        return None
    return np.array([float(v) if isinstance(v, (int, float)) else np.nan for v in values])


def profile_arrays(profiles: Sequence[Profile], labels: Sequence[str], k: int,
                   b: int) -> dict[str, np.ndarray]:
    """Per-expert sums and counts: ``prof.all`` (E, 2), ``prof.cat_*`` (E, C),
    ``prof.clu_*`` (E, K), ``prof.band_*`` (E, B)."""
    out = {"prof.all": np.array([[p.overall.quality * p.overall.n, p.overall.n]
                                 for p in profiles], np.float64).reshape(-1, 2)}
    for name, size, groups in (
        ("cat", len(labels), lambda p: [p.categories.get(c) for c in labels]),
        ("clu", k, lambda p: p.clusters), ("band", b, lambda p: p.difficulty_bands),
    ):
        sums = np.zeros((len(profiles), size))
        counts = np.zeros((len(profiles), size))
        for e, prof in enumerate(profiles):
            gs = list(groups(prof))
            if len(gs) != size:
                raise ValueError(f"profile of {prof.model}: {len(gs)} {name} groups, the frame "
                                 f"has {size}")
            for j, g in enumerate(gs):
                if g is not None:
                    sums[e, j], counts[e, j] = g.quality * g.n, g.n
        out[f"prof.{name}_sum"], out[f"prof.{name}_n"] = sums, counts
    return out


class ProfileRouter(Router):
    kind = "profile"

    def __init__(self, experts: Sequence[str], query_model: QueryModel, centroids: np.ndarray,
                 band_edges: np.ndarray, scorer: np.ndarray, prof: Mapping[str, np.ndarray],
                 kappa: float = 5.0, sources: Mapping[str, Any] | None = None) -> None:
        super().__init__(experts)
        self.query_model, self.kappa = query_model, float(kappa)
        self.centroids = np.asarray(centroids, np.float32)  # (K, D)
        self.band_edges = np.asarray(band_edges, np.float64)  # (B + 1,)
        self.scorer = np.asarray(scorer, np.float64)  # (F + 1,)
        self.prof = {k: np.asarray(v, np.float64) for k, v in prof.items()}
        if self.prof["prof.all"].shape[0] != len(self.experts):
            raise ValueError(f"profile: {self.prof['prof.all'].shape[0]} profiles for "
                             f"{len(self.experts)} experts")
        self.sources = dict(sources or {})

    @property
    def frame(self) -> str:
        """Identifies the frame (query model + centroids + bands) profiles must refer to."""
        h = hashlib.sha1(self.centroids.tobytes() + self.band_edges.tobytes()
                         + "|".join(self.query_model.labels).encode())
        return f"profile-frame-{h.hexdigest()[:12]}"

    # -- the frame ------------------------------------------------------------------------
    def locate(self, f: QueryFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(cluster (B,), band (B,)) of queries in the frame."""
        cluster = (f.x @ self.centroids.T).argmax(axis=1)
        band = np.searchsorted(self.band_edges[1:-1], f.difficulty, side="right")
        return cluster, band

    def profile_of(self, model: str, records: RecordSet, source: Mapping[str, Any] | None = None,
                   features: QueryFeatures | None = None,
                   facts: Mapping[str, Mapping[str, Any]] | None = None) -> Profile:
        """``model``'s profile from its results in ``records`` (in this router's frame);
        with ``facts`` (models.json), its estimated costs and parameters too."""
        f = features if features is not None else self.query_model.features(records.queries())
        cluster, band = self.locate(f)
        costs, known = None, {}
        if facts is not None:
            est = estimated_costs(records, records.models, facts)  # output tokens: as eval
            costs = None if est is None else est[:, records.models.index(model)]
            known = {k: v for k, v in facts.get(model, {}).items()
                     if k in ("active_params_b", "price_usd_per_mtok")}
        return build_profile(model, self.frame, score_matrix(records, [model])[:, 0],
                             records.ids, records.categories, cluster, band,
                             self.band_edges.tolist(), len(self.centroids), costs, source, known,
                             recorded_latency(records, model))

    def with_profile(self, profile: Profile) -> ProfileRouter:
        """A copy that also routes to ``profile.model`` (replacing an expert of that name)."""
        if profile.frame != self.frame:
            raise ValueError(f"profile of {profile.model} is in frame {profile.frame!r}, this "
                             f"router's frame is {self.frame!r}: build it with this router")
        new = profile_arrays([profile], self.query_model.labels, len(self.centroids),
                             len(self.band_edges) - 1)
        keep = [i for i, e in enumerate(self.experts) if e != profile.model]
        prof = {k: np.concatenate([v[keep], new[k]]) for k, v in self.prof.items()}
        sources = {**self.sources, profile.model: profile.source}
        return ProfileRouter([self.experts[i] for i in keep] + [profile.model],
                             self.query_model, self.centroids, self.band_edges, self.scorer,
                             prof, self.kappa, sources)

    # -- scoring ----------------------------------------------------------------------------
    def pair_features(self, f: QueryFeatures, prof: Mapping[str, np.ndarray]) -> np.ndarray:
        """(B, E, 9) scorer inputs for every (query, profiled model)."""
        cluster, band = self.locate(f)
        total, n = prof["prof.all"][:, 0], prof["prof.all"][:, 1]
        prior = (total + 1.0) / (n + 2.0)  # (E,)

        def shrunk(name: str) -> np.ndarray:  # (E, G) logits
            s, c = prof[f"prof.{name}_sum"], prof[f"prof.{name}_n"]
            return logit((s + self.kappa * prior[:, None]) / (c + self.kappa))

        f_all = np.broadcast_to(logit(prior), (len(cluster), len(prior)))  # (B, E)
        cats = f.cats  # (B, C)
        covered = cats.sum(axis=1, keepdims=True)
        f_cat = cats @ shrunk("cat").T + (1.0 - covered) * f_all  # (B, E)
        f_clu = shrunk("clu")[:, cluster].T  # (B, E)
        f_band = shrunk("band")[:, band].T  # (B, E)
        d = np.broadcast_to(f.difficulty[:, None], f_all.shape)
        return np.stack([f_all, f_cat, f_clu, f_band, d, d ** 2, f_all * d, f_cat * d,
                         f_band * d], axis=-1)

    def predict(self, queries: Sequence[Query]) -> Prediction:
        f = self.query_model.features(queries)
        phi = self.pair_features(f, self.prof)  # (B, E, F)
        p = sigmoid(phi @ self.scorer[:-1] + self.scorer[-1])  # (B, E)
        cluster, _ = self.locate(f)
        evidence = self.prof["prof.clu_n"][:, cluster].T  # (B, E)
        return Prediction(self.experts, p, confidence(p, evidence + 1.0, self.kappa))

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            **options: Any) -> ProfileRouter:
        """Frame, training profiles, then the shared scorer. Options: ``clusters`` (K, 32),
        ``bands`` (B, 5), ``kappa``, ``profile_fractions`` (default [0.05, 0.1, 0.25, 0.5]),
        ``draws`` (profiles per model, 2), ``c`` (scorer's inverse L2), ``models_json``
        (costs and parameters in the profiles), and the query model's options
        (``encoder``, ``label_files``, ...)."""
        opts = dict(options)
        k, b = int(opts.pop("clusters", 32)), int(opts.pop("bands", 5))
        kappa, c = float(opts.pop("kappa", 5.0)), float(opts.pop("c", 1.0))
        fractions = [float(x) for x in opts.pop("profile_fractions", [0.05, 0.1, 0.25, 0.5])]
        draws, seed = int(opts.pop("draws", 2)), int(opts.get("seed", 0))
        facts = load_facts(opts.pop("models_json", None))
        names = expert_columns(train, experts)
        scores = score_matrix(train, names)
        qm, feats = QueryModel.fit(train, scores, opts)
        if opts:
            raise ValueError(f"profile: unknown option(s) {sorted(opts)}")
        centroids, _ = kmeans(feats.x, k, seed)
        edges = np.quantile(feats.difficulty, np.linspace(0, 1, b + 1))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
        empty = {"prof.all": np.zeros((len(names), 2))}
        router = cls(names, qm, centroids, edges, np.zeros(10), empty, kappa)
        router.scorer = router._train_scorer(train, names, scores, feats, fractions, draws, c,
                                             seed)
        full = [router.profile_of(m, train, {"n_records": len(train), "fraction": 1.0},
                                  feats, facts) for m in names]
        router.prof = profile_arrays(full, qm.labels, len(centroids), b)
        router.sources = {p.model: p.source for p in full}
        return router

    def _train_scorer(self, train: RecordSet, names: list[str], scores: np.ndarray,
                      feats: QueryFeatures, fractions: list[float], draws: int, c: float,
                      seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        rows, targets = [], []
        for j, model in enumerate(names):
            for draw in range(draws):
                frac = fractions[(j + draw) % len(fractions)]
                in_prof = rng.random(len(train)) < frac
                sub = train.subset(np.flatnonzero(in_prof))
                sub_f = QueryFeatures(feats.x[in_prof], feats.cats[in_prof],
                                      feats.difficulty[in_prof])
                prof = profile_arrays([self.profile_of(model, sub, {}, sub_f)],
                                      self.query_model.labels, len(self.centroids),
                                      len(self.band_edges) - 1)
                out = ~in_prof
                rest = QueryFeatures(feats.x[out], feats.cats[out], feats.difficulty[out])
                rows.append(self.pair_features(rest, prof)[:, 0, :])
                targets.append(scores[out, j])
        w, bias = fit_logistic(np.concatenate(rows), np.concatenate(targets), c)
        return np.append(w, bias)

    # -- persistence ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"query_model": self.query_model.config(), "kappa": self.kappa,
                "frame": self.frame, "sources": self.sources}

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.query_model.arrays(), "centroids": self.centroids,
                "band_edges": self.band_edges, "scorer": self.scorer,
                **{k: v.astype(np.float32) for k, v in self.prof.items()}}

    @classmethod
    def from_saved(cls, experts: Sequence[str], config: Mapping[str, Any],
                   arrays: Mapping[str, np.ndarray]) -> ProfileRouter:
        prof = {k: v for k, v in arrays.items() if k.startswith("prof.")}
        return cls(experts, QueryModel.restore(config["query_model"], arrays),
                   arrays["centroids"], arrays["band_edges"], arrays["scorer"], prof,
                   float(config.get("kappa", 5.0)), config.get("sources"))
