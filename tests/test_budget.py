"""Budget files, API keys, reload on change, request policy, and the guard."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from coe_gateway.budget import (
    BudgetGuard,
    BudgetStore,
    KeyIndex,
    Tenant,
    budget_state,
    check_expert_allowed,
    hash_key,
    load_budget_file,
    new_key,
    resolve_policy,
)
from coe_gateway.config import PolicySpec
from coe_gateway.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    PermissionDeniedError,
    RateLimitError,
    RequestError,
)
from coe_gateway.ledger import InMemoryLedger
from coe_gateway.policies import BudgetPaced, CheapestAboveTarget, TradeOff

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "budgets.example.yaml"
NOW = datetime(2025, 11, 16, 0, 0, tzinfo=UTC)  # the month is 15/30 = half gone


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tenant_yaml(name: str, key: str, extra: str = "") -> str:
    return f"  - name: {name}\n    api_keys: ['{hash_key(key)}']\n{extra}"


def test_example_file_loads() -> None:
    budget = load_budget_file(EXAMPLE)
    acme = budget.tenant("acme")
    assert acme.limits == {"day": 2.0, "month": 40.0}
    assert acme.policy is not None and acme.policy.kind == "budget-paced"
    assert KeyIndex(budget.tenants).find("sk-coe-example-acme-ci") is acme
    assert KeyIndex(budget.tenants).find("sk-coe-example-free").name == "free"


def test_hash_key_and_new_key() -> None:
    assert hash_key("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    a, b = new_key(), new_key()
    assert a != b and a.startswith("sk-coe-") and len(a) > 40


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ("tenants: []\n", "tenants", "at least 1"),
        ("tenants:\n  - name: a\n    api_keys: [sk-coe-plain]\n", "tenants[0].api_keys[0]",
         "never in clear"),
        ("tenants:\n  - name: a\n    budgets: {day_usd: -1}\n", "tenants[0].budgets.day_usd",
         "greater than 0"),
        ("tenants:\n  - name: a\n    policy: {kind: nope}\n", "tenants[0]", "unknown policy"),
        ("tenants:\n  - name: a\n    budgets: {weekly_usd: 1}\n",
         "tenants[0].budgets.weekly_usd", "Extra inputs"),
        ("tenants:\n  - name: a\n  - name: a\n", "<root>", "unique"),
        ("tenants:\n  - name: a\n    allowed_policies: [cheap]\n",
         "tenants[0].allowed_policies", "unknown policy"),
        ("tenants: [\n", "line", "invalid YAML"),
    ],
)
def test_bad_files_name_field_and_reason(tmp_path: Path, body: str, field: str,
                                         reason: str) -> None:
    path = write(tmp_path / "b.yaml", body)
    with pytest.raises(ConfigError) as info:
        load_budget_file(path)
    assert str(path) in str(info.value)
    assert info.value.field.startswith(field)
    assert reason in str(info.value)


def test_unknown_allowed_expert_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "b.yaml", "tenants:\n  - name: a\n    allowed_experts: [x, y]\n")
    with pytest.raises(ConfigError) as info:
        load_budget_file(path, known_experts=["x"])
    assert info.value.field == "tenants[0].allowed_experts[1]"


def test_authenticate(tmp_path: Path) -> None:
    path = write(tmp_path / "b.yaml", "tenants:\n" + tenant_yaml("a", "key-a")
                 + tenant_yaml("b", "key-b"))
    store = BudgetStore(path)
    assert store.authenticate("key-b").name == "b"
    for bad in (None, "", "key-c", "key-a "):
        with pytest.raises(AuthenticationError) as info:
            store.authenticate(bad)
        assert info.value.status_code == 401


def _bump_mtime(path: Path, step: int) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + step * 1_000_000_000))


def test_reload_on_change_keeps_last_good(tmp_path: Path) -> None:
    path = write(tmp_path / "b.yaml", "tenants:\n" + tenant_yaml("a", "key-a"))
    store = BudgetStore(path, check_interval_s=0.0)
    assert store.authenticate("key-a").limits["day"] is None
    write(path, "tenants:\n" + tenant_yaml("a", "key-a", "    budgets: {day_usd: 3}\n"))
    _bump_mtime(path, 1)
    assert store.authenticate("key-a").limits["day"] == 3.0 and store.reloads == 1
    write(path, "tenants:\n" + tenant_yaml("a", "key-a", "    budgets: {day_usd: oops}\n"))
    _bump_mtime(path, 2)
    assert store.authenticate("key-a").limits["day"] == 3.0  # last good version in force
    assert store.last_error is not None and "budgets.day_usd" in store.last_error
    path.unlink()
    assert store.authenticate("key-a").name == "a"
    write(path, "tenants:\n" + tenant_yaml("z", "key-z"))
    _bump_mtime(path, 3)
    assert store.authenticate("key-z").name == "z" and store.last_error is None
    with pytest.raises(AuthenticationError):
        store.authenticate("key-a")  # removed keys stop working


def test_first_load_of_a_bad_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        BudgetStore(write(tmp_path / "b.yaml", "tenants: 3\n"))


def test_resolve_policy() -> None:
    default = PolicySpec(kind="trade-off", params={"lam": 2.0})
    plain = Tenant(name="p")
    assert resolve_policy(plain, default) == TradeOff(lam=2.0)
    acme = Tenant(name="a", policy=PolicySpec(kind="budget-paced", params={"lam": 3.0}),
                  quality_target=0.8, allowed_policies=["budget-paced", "cheapest-above-target"])
    assert resolve_policy(acme, default) == BudgetPaced(lam=3.0)
    # an override of the same kind keeps the tenant's other parameters
    assert resolve_policy(acme, default, {"kind": "budget-paced", "params": {"gain": 1.0}}) \
        == BudgetPaced(lam=3.0, gain=1.0)
    # the quality target fills the target of a policy that has one
    assert resolve_policy(acme, default, {"kind": "cheapest-above-target"}) \
        == CheapestAboveTarget(target=0.8)
    with pytest.raises(PermissionDeniedError):
        resolve_policy(acme, default, {"kind": "quality-first"})
    with pytest.raises(RequestError):
        resolve_policy(acme, default, {"kind": "budget-paced", "params": {"nope": 1}})


def test_expert_rights() -> None:
    t = Tenant(name="t", allowed_experts=["small"])
    check_expert_allowed(t, "small")
    with pytest.raises(PermissionDeniedError) as info:
        check_expert_allowed(t, "large")
    assert info.value.status_code == 403


async def test_guard_admit_state_and_refusals() -> None:
    tenant = Tenant(name="t", budgets={"day_usd": 1.0, "month_usd": 10.0},
                    request_cap_usd=0.5, rate_limit={"requests_per_minute": 5})
    guard = BudgetGuard(InMemoryLedger())
    state = await guard.admit(tenant, NOW)
    assert state.remaining_usd == 1.0 and state.request_cap_usd == 0.5
    # day: all left, all of the day to come (pace 1); month: 100% left, half to come (pace 2)
    assert state.period_usd == 1.0 and state.period_elapsed == 0.0
    res = await guard.reserve(tenant, 0.9, NOW)
    await guard.settle(res, 0.9)
    state = await guard.admit(tenant, NOW)
    assert state.remaining_usd == pytest.approx(0.1)
    err = await guard.unaffordable(tenant, np.array([0.2, 0.3]), NOW)
    assert err.extra["limit"] == "day"
    err = await guard.unaffordable(tenant, np.array([0.7, np.inf]), NOW)
    assert err.extra["limit"] == "request"
    res = await guard.reserve(tenant, 0.1, NOW)
    await guard.settle(res, 0.1)
    with pytest.raises(BudgetExceededError) as info:
        await guard.admit(tenant, NOW)  # nothing left: refused before any routing work
    assert info.value.extra["resets_at"] == "2025-11-17T00:00:00+00:00"
    await guard.admit(Tenant(name="u", rate_limit={"requests_per_minute": 1}), NOW)
    with pytest.raises(RateLimitError):
        await guard.admit(Tenant(name="u", rate_limit={"requests_per_minute": 1}), NOW)
    body = await guard.usage(tenant, NOW)
    assert body["tenant"] == "t" and body["periods"][0]["spent_usd"] == pytest.approx(1.0)
    assert body["periods"][1]["resets_at"] == "2025-12-01T00:00:00+00:00"


def test_budget_state_paces_on_the_period_furthest_behind() -> None:
    from coe_gateway.ledger import PeriodUsage, period_bounds

    def usage(period: str, limit: float, spent: float) -> PeriodUsage:
        start, end = period_bounds(period, NOW)  # type: ignore[arg-type]
        return PeriodUsage(period, limit, spent, 0.0, start, end)  # type: ignore[arg-type]

    # day: 4 of 5 left, whole day to come (pace 0.8); month: 20 of 100 left, half to come
    # (pace 0.4): the month binds the pace, the day's 4 USD is the hard cap
    state = budget_state([usage("day", 5, 1), usage("month", 100, 80)], None, NOW)
    assert state.remaining_usd == 4.0
    assert (state.period_usd, state.period_remaining_usd) == (100, 20)
    assert state.period_elapsed == pytest.approx(0.5)
    assert BudgetPaced().pace(state) == pytest.approx(0.4)


def test_example_gateway_config_names_its_budget_file() -> None:
    from coe_gateway.config import load_config

    cfg = load_config(EXAMPLE.parent / "embedded-budgets.yaml")
    assert cfg.budget_file == str(EXAMPLE) and cfg.redis_url
    budget = load_budget_file(cfg.budget_file, known_experts=cfg.expert_names)
    assert budget.tenant("lab").allowed_experts == ["smollm2-135m-instruct"]
