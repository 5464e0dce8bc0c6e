"""API keys, tenant rights, budgets, rate limits, the usage endpoint, the cache and a budget
file edited while serving, through the HTTP API over a fake upstream (in-process ledger)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from coe_gateway.budget import hash_key
from coe_gateway.config import GatewayConfig
from coe_gateway.server.app import create_app
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import serve_in_thread

# output-only prices: a request with max_tokens=4 costs (and reserves) exactly 4e-6 USD
BUDGETS = """
tenants:
  - name: acme
    api_keys: ['{acme}']
    budgets: {{month_usd: 1.0}}
    allowed_policies: [trade-off, quality-first]
    cache: {{semantic: true, semantic_threshold: 0.95}}
  - name: tight
    api_keys: ['{tight}']
    budgets: {{day_usd: 0.000012}}
    allowed_experts: [cheap]
  - name: slow
    api_keys: ['{slow}']
    rate_limit: {{requests_per_minute: 2}}
  - name: capped
    api_keys: ['{capped}']
    request_cap_usd: 0.000001
"""
KEYS = {"acme": "sk-acme", "tight": "sk-tight", "slow": "sk-slow", "capped": "sk-capped"}


def write_budgets(path: Path, body: str = BUDGETS, **keys: str) -> None:
    hashes = {name: hash_key(key) for name, key in {**KEYS, **keys}.items()}
    path.write_text(body.format(**hashes), encoding="utf-8")
    st = path.stat()  # a distinct mtime even within the file system's time resolution
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9 * len(body)))


def fake_embedder(texts: list[str]) -> np.ndarray:
    """Texts about a capital share one direction; any other text gets its own."""
    out = []
    for t in texts:
        v = np.random.default_rng(sum(t.encode())).normal(size=8)
        out.append(np.eye(8)[0] if "capital" in t else v / np.linalg.norm(v))
    return np.array(out, np.float32)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    budget_path = tmp_path_factory.mktemp("budget") / "budgets.yaml"
    write_budgets(budget_path)
    upstream = FakeUpstream("m")
    with serve_in_thread(upstream) as up:
        cfg = GatewayConfig.model_validate({
            "experts": [
                {"name": "cheap", "backend": "openai", "model": "x", "urls": [f"{up}/v1"],
                 "price": {"output_per_mtok": 1.0}, "quality_prior": 0.5},
                {"name": "strong", "backend": "openai", "model": "x", "urls": [f"{up}/v1"],
                 "price": {"output_per_mtok": 2.0}, "quality_prior": 0.9},
            ],
            "routing": {"routers": [{"name": "prior", "kind": "prior", "options": {
                "priors": {"cheap": 0.5, "strong": 0.9}}}],
                "policy": {"kind": "trade-off", "params": {"lam": 0.001}}},
            "budget_file": str(budget_path),
            "cache": {"enabled": True, "semantic": False},
        })
        app = create_app(cfg)
        with serve_in_thread(app) as url:
            app.state.runtime.tenancy.cache.embedder = fake_embedder
            app.state.runtime.tenancy.store.check_interval_s = 0.0
            yield {"url": url, "budgets": budget_path, "upstream": upstream}


def chat(gw: dict[str, Any], key: str | None, **body: Any) -> httpx.Response:
    payload = {"model": "auto", "messages": [{"role": "user", "content": "hello"}],
               "max_tokens": 4, **body}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gw['url']}/v1/chat/completions", json=payload, headers=headers)


def test_fake_upstream_keys_are_required(gateway: dict[str, Any]) -> None:
    for key in (None, "sk-wrong"):
        r = chat(gateway, key)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{gateway['url']}/v1/chat/completions", headers={"x-api-key": "sk-acme"},
                   json={"model": "auto", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    client = openai.OpenAI(base_url=f"{gateway['url']}/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])


def test_fake_upstream_tenant_rights(gateway: dict[str, Any]) -> None:
    r = chat(gateway, "sk-tight", model="strong")
    assert r.status_code == 403 and r.json()["error"]["param"] == "model"
    r = chat(gateway, "sk-tight")  # auto routes only among the experts it may use
    assert r.status_code == 200 and r.headers["x-coe-expert"] == "cheap"
    r = chat(gateway, "sk-acme", coe={"policy": "cheapest-above-target"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"


def test_fake_upstream_policy_override(gateway: dict[str, Any]) -> None:
    plain = chat(gateway, "sk-acme")
    assert plain.headers["x-coe-expert"] == "strong"
    cheap = chat(gateway, "sk-acme", coe={"policy": "trade-off", "params": {"lam": 1e6}})
    routing = cheap.json()["coe_routing"]
    assert cheap.headers["x-coe-expert"] == "cheap"
    assert routing["policy"] == {"kind": "trade-off", "lam": 1e6, "cost_scale": 0.001}


def test_fake_upstream_budget_refusal_and_usage(gateway: dict[str, Any]) -> None:
    # tight: 12e-6 a day = three requests of 4e-6 (earlier tests may have made some)
    def usage() -> dict[str, Any]:
        return httpx.get(f"{gateway['url']}/v1/usage",
                         headers={"authorization": "Bearer sk-tight"}).json()

    left = round(usage()["periods"][0]["remaining_usd"] / 4e-6)
    assert 1 <= left <= 3
    codes = [chat(gateway, "sk-tight", messages=[{"role": "user", "content": f"q{i}"}])
             .status_code for i in range(left)]
    assert codes == [200] * left
    r = chat(gateway, "sk-tight")
    err = r.json()["error"]
    assert r.status_code == 402 and err["code"] == "budget_exceeded"
    assert err["limit"] == "day" and err["limit_usd"] == pytest.approx(12e-6)
    assert err["resets_at"].endswith("T00:00:00+00:00")
    assert int(r.headers["retry-after"]) == err["retry_after_s"] > 0
    body = usage()
    day = body["periods"][0]
    assert body["tenant"] == "tight" and day["period"] == "day"
    assert day["spent_usd"] == pytest.approx(12e-6) and day["remaining_usd"] == 0.0
    assert httpx.get(f"{gateway['url']}/v1/usage").status_code == 401


def test_fake_upstream_request_cap(gateway: dict[str, Any]) -> None:
    r = chat(gateway, "sk-capped")  # the cheapest expert's estimate (4e-6) passes the cap
    err = r.json()["error"]
    assert r.status_code == 402 and err["limit"] == "request"
    assert err["limit_usd"] == 1e-6 and err["requested_usd"] == pytest.approx(4e-6)


def test_fake_upstream_rate_limit(gateway: dict[str, Any]) -> None:
    codes = [chat(gateway, "sk-slow").status_code for _ in range(3)]
    assert codes[:2] == [200, 200]
    if codes[2] == 200:  # the minute turned between the requests: try once more
        codes.append(chat(gateway, "sk-slow").status_code)
    assert codes[-1] == 429
    r = chat(gateway, "sk-slow")
    assert r.json()["error"]["limit"] == "requests_per_minute" and "retry-after" in r.headers


def test_fake_upstream_exact_cache_identical_body_and_stream(gateway: dict[str, Any]) -> None:
    upstream: FakeUpstream = gateway["upstream"]
    msgs = [{"role": "user", "content": "cache me"}]
    first = chat(gateway, "sk-acme", messages=msgs, temperature=0)
    n = len(upstream.requests)
    second = chat(gateway, "sk-acme", messages=msgs, temperature=0)
    assert second.content == first.content  # byte for byte
    assert second.headers["x-coe-cache"] == "exact" and first.headers["x-coe-cache"] == "miss"
    assert len(upstream.requests) == n  # the upstream was not asked again
    # another tenant does not get it
    other = chat(gateway, "sk-slow", messages=msgs, temperature=0)
    assert other.status_code in (200, 429) and other.headers.get("x-coe-cache") != "exact"

    def stream() -> tuple[list[bytes], httpx.Headers]:
        with httpx.stream("POST", f"{gateway['url']}/v1/chat/completions",
                          headers={"authorization": "Bearer sk-acme"},
                          json={"model": "auto", "messages": [{"role": "user", "content": "s"}],
                                "max_tokens": 3, "seed": 7, "stream": True}) as r:
            return [line for line in r.iter_lines() if line], r.headers

    (a, ha), (b, hb) = stream(), stream()
    assert a == b and a[-1] == "data: [DONE]"
    assert (ha["x-coe-cache"], hb["x-coe-cache"]) == ("miss", "exact")
    text = "".join(json.loads(x[6:])["choices"][0]["delta"].get("content", "")
                   for x in a[:-1] if json.loads(x[6:])["choices"])
    assert text == "echo echo echo"


def test_fake_upstream_semantic_cache(gateway: dict[str, Any]) -> None:
    first = chat(gateway, "sk-acme", messages=[{"role": "user", "content": "capital of Peru"}])
    near = chat(gateway, "sk-acme", messages=[{"role": "user", "content": "Peru's capital"}])
    far = chat(gateway, "sk-acme", messages=[{"role": "user", "content": "bake bread"}])
    assert near.headers["x-coe-cache"] == "semantic" and near.content == first.content
    assert far.headers["x-coe-cache"] == "miss"


def test_fake_upstream_budget_file_edited_while_serving(gateway: dict[str, Any]) -> None:
    path: Path = gateway["budgets"]
    assert chat(gateway, "sk-new").status_code == 401
    body = BUDGETS + "  - name: new\n    api_keys: ['{new}']\n    budgets: {{day_usd: 1e-9}}\n"
    write_budgets(path, body, new="sk-new")
    r = chat(gateway, "sk-new")  # the new tenant exists, and its tiny budget binds
    assert r.status_code == 402 and r.json()["error"]["limit"] == "day"
    write_budgets(path, body.replace("1e-9", "oops"), new="sk-new")  # a bad edit
    assert chat(gateway, "sk-new").status_code == 402  # the last good version holds
    write_budgets(path, BUDGETS)  # the tenant removed again
    assert chat(gateway, "sk-new").status_code == 401
    assert chat(gateway, "sk-acme").status_code == 200
