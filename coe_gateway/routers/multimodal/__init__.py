"""Image-aware routers (MMR-Bench, arXiv 2601.17814): kNN, LinearMF, MLP-MF, k-means and the
cross-modal router over the text embedding plus image feature blocks
(:mod:`coe_gateway.vision.features`), fused by ``mean``, ``concat`` or ``adaptive``
(:mod:`.fusion`; the cross-modal router fuses by attention).

Kinds: ``image-knn``, ``image-linearmf``, ``image-mlpmf``, ``image-kmeans``, ``image-cmr``.
Options: ``features`` (image kinds; ``[]`` = the same router on text only, the baseline),
``fusion``, ``encoder``, ``feature_options`` (per kind) and the kind's own hyper-parameters.
Every router keeps a text head fitted on the same rows for queries without image features
(:mod:`.base`), so text-only requests route exactly as with the text-only router.

MMR-Bench's routers also predict each model's cost; these do not: the policies take prices
from the gateway config (cost is known per model there, not learned per query).
"""
