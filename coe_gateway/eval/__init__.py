"""Offline evaluation of routing policies (``coe-gateway eval``).

suite (YAML suite files) -> datasets (records, RouterBench CSV/pickle, splits) -> costs
(estimated and realised per-query costs) -> predictions (train routers, cache predictions)
-> sweep (Policy.choose_batch along a trade-off parameter) -> metrics (AIQ, APGR, CPT,
nAUC, Ps, QNC, cost to match) -> report / plots; runner ties them together. replay analyses
the gateway's routing log; bench times the evaluator itself.
"""
