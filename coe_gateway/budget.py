"""Budget files: tenants, their hashed API keys, budgets, allowed experts and policies.

A budget file (YAML, see ``configs/budgets.example.yaml`` and ``docs/budgets.md``) lists
tenants. Each has API keys stored as SHA-256 hashes (``sha256:<hex>``, made with
``coe-gateway keys hash``), budgets per period in USD (``day_usd``, ``month_usd``), a
per-request cost cap, a requests-per-minute limit, the experts it may use, its default policy
and quality target, the policies a request may switch to, and its cache settings.

:class:`BudgetStore` holds the current file and reloads it when it changes on disk; an edit
that does not validate is logged and the last good version stays in force.
:class:`BudgetGuard` joins a tenant and the spend :mod:`~coe_gateway.ledger`: rate limit,
budget state for the policy, reserve and settle.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from coe_gateway.config import PolicySpec, Strict, load_file, repeated
from coe_gateway.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    PermissionDeniedError,
    RequestError,
)
from coe_gateway.ledger import (
    Ledger,
    PeriodUsage,
    Reservation,
    budget_error,
    period_elapsed,
    to_nano,
    utcnow,
)
from coe_gateway.policies import POLICY_KINDS, BudgetState, Policy, build_policy

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-coe-"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


# -- keys -------------------------------------------------------------------------------------


def new_key() -> str:
    """A fresh random API key (256 bits of entropy)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The form a budget file stores: ``sha256:<64 hex digits>`` of the key's UTF-8 bytes.

    Plain SHA-256 is enough because keys are long random strings (``new_key``), not passwords.
    """
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKey(Strict):
    """One key of a tenant: its hash, and an optional name for logs (``ci``, ``prod``)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """Accept the short form ``"sha256:<hex>"``; refuse a key written in clear."""
        if isinstance(value, str):
            if value.startswith("sha256:"):
                return {"sha256": value.removeprefix("sha256:").lower()}
            raise ValueError(
                "an API key must be stored as 'sha256:<64 hex digits>', never in clear; "
                "make one with `coe-gateway keys hash`"
            )
        return value


# -- the file ---------------------------------------------------------------------------------


class Budgets(Strict):
    """Spend limits per calendar period (UTC); absent = unlimited."""

    day_usd: float | None = Field(None, gt=0)
    month_usd: float | None = Field(None, gt=0)

    def limits(self) -> dict[str, float | None]:
        return {"day": self.day_usd, "month": self.month_usd}


class RateLimit(Strict):
    requests_per_minute: int | None = Field(None, ge=1)


class TenantCache(Strict):
    """Cache settings of a tenant; None inherits the gateway config's ``cache`` section
    (``enabled`` for ``exact``, ``semantic``, ``semantic_threshold``, ``ttl_s``)."""

    exact: bool | None = None
    semantic: bool | None = None
    semantic_threshold: float | None = Field(None, gt=0, le=1)
    ttl_s: int | None = Field(None, ge=1)


class Tenant(Strict):
    """One tenant of a budget file."""

    name: str = Field(pattern=NAME_PATTERN)
    api_keys: list[ApiKey] = Field(default_factory=list)
    budgets: Budgets = Budgets()
    request_cap_usd: float | None = Field(None, gt=0)
    rate_limit: RateLimit = RateLimit()
    allowed_experts: list[str] | None = None
    policy: PolicySpec | None = None
    allowed_policies: list[str] | None = None
    quality_target: float | None = Field(None, ge=0, le=1)
    cache: TenantCache = TenantCache()
    answer: str | None = Field(None, description="the answer extractor a cascade uses for "
                               "this tenant's requests (a request's coe.answer overrides it)")

    @field_validator("answer")
    @classmethod
    def _known_answer(cls, value: str | None) -> str | None:
        from coe_gateway.answers import EXTRACTORS

        if value is not None and value not in EXTRACTORS:
            raise ValueError(f"unknown answer extractor {value!r}; known: {sorted(EXTRACTORS)}")
        return value

    @field_validator("allowed_policies")
    @classmethod
    def _known_policies(cls, value: list[str] | None) -> list[str] | None:
        for kind in value or []:
            if kind not in POLICY_KINDS:
                raise ValueError(f"unknown policy {kind!r}; known: {sorted(POLICY_KINDS)}")
        return value

    @model_validator(mode="after")
    def _policy_builds(self) -> Tenant:
        if self.policy is not None:
            build_policy(self.policy.kind, self.policy.params)  # ValueError names the problem
        return self

    @property
    def limits(self) -> dict[str, float | None]:
        return self.budgets.limits()

    def allows_expert(self, expert: str) -> bool:
        return self.allowed_experts is None or expert in self.allowed_experts

    def allows_policy(self, kind: str) -> bool:
        return self.allowed_policies is None or kind in self.allowed_policies


ANONYMOUS = Tenant(name="anonymous")
"""The tenant of every request when the gateway has no budget file (auth is off)."""


class LedgerSettings(Strict):
    """How the ledger behaves; ``fail_open`` decides what happens while Redis is down."""

    fail_open: bool = False
    reservation_ttl_s: float = Field(900.0, gt=0)


class BudgetFile(Strict):
    version: Literal[1] = 1
    ledger: LedgerSettings = LedgerSettings()
    tenants: list[Tenant] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BudgetFile:
        dupes = repeated([t.name for t in self.tenants])
        if dupes:
            raise ValueError(f"tenant names must be unique; repeated: {dupes}")
        hashes = [k.sha256 for t in self.tenants for k in t.api_keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("the same API key hash is listed more than once")
        return self

    def tenant(self, name: str) -> Tenant:
        for t in self.tenants:
            if t.name == name:
                return t
        raise KeyError(name)


def check_experts(path: str, budget: BudgetFile, known: Iterable[str]) -> None:
    """ConfigError naming the field when a tenant allows an expert the gateway lacks."""
    known = set(known)
    for i, tenant in enumerate(budget.tenants):
        for j, name in enumerate(tenant.allowed_experts or []):
            if name not in known:
                raise ConfigError(path, f"tenants[{i}].allowed_experts[{j}]",
                                  f"unknown expert {name!r}; known: {sorted(known)}")


def load_budget_file(path: str | Path, known_experts: Iterable[str] | None = None) -> BudgetFile:
    """Load and validate a budget file (ConfigError naming file, field and reason)."""
    budget = load_file(path, BudgetFile)
    if known_experts is not None:
        check_experts(str(path), budget, known_experts)
    return budget


# -- the live store ---------------------------------------------------------------------------


class KeyIndex:
    """API key -> tenant. Every stored hash is compared (``hmac.compare_digest``), with no early
    exit, so the time taken does not depend on which key matched or how much of it did."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self._entries = [(bytes.fromhex(k.sha256), t) for t in tenants for k in t.api_keys]

    def find(self, key: str) -> Tenant | None:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for stored, tenant in self._entries:
            if hmac.compare_digest(digest, stored):
                found = tenant
        return found


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class BudgetStore:
    """The budget file in force, reloaded when it changes.

    The first load raises ConfigError (start-up must fail on a bad file). Later, changes are
    noticed by ``maybe_reload`` (called on every authentication, at most once per
    ``check_interval_s``): a valid edit replaces the file, an invalid one is logged and the
    last good version stays (``last_error`` says why).
    """

    def __init__(self, path: str | Path, *, known_experts: Iterable[str] | None = None,
                 check_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.known_experts = None if known_experts is None else list(known_experts)
        self.check_interval_s = check_interval_s
        self.last_error: str | None = None
        self.reloads = 0
        self._sig = _signature(self.path)
        self._file = load_budget_file(self.path, self.known_experts)
        self._index = KeyIndex(self._file.tenants)
        self._checked_at = time.monotonic()

    @property
    def file(self) -> BudgetFile:
        return self._file

    def maybe_reload(self) -> bool:
        """Reload when the file changed and the last check is older than the interval."""
        if time.monotonic() - self._checked_at < self.check_interval_s:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Reload now if the file changed; True when a new version came into force."""
        self._checked_at = time.monotonic()
        sig = _signature(self.path)
        if sig == self._sig:
            return False
        self._sig = sig
        try:
            new = load_budget_file(self.path, self.known_experts)
        except ConfigError as exc:
            self.last_error = str(exc)
            log.error("budget file not reloaded, keeping the last good version: %s", exc)
            return False
        self._file, self._index = new, KeyIndex(new.tenants)
        self.last_error = None
        self.reloads += 1
        log.info("budget file %s reloaded (%d tenants)", self.path, len(new.tenants))
        return True

    def authenticate(self, key: str | None) -> Tenant:
        """The tenant of ``key`` (AuthenticationError 401 when missing or unknown)."""
        self.maybe_reload()
        if not key:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        tenant = self._index.find(key)
        if tenant is None:
            raise AuthenticationError("invalid API key")
        return tenant

    def tenant(self, name: str) -> Tenant:
        return self._file.tenant(name)


# -- policy of a request ----------------------------------------------------------------------


def resolve_policy(tenant: Tenant, default: PolicySpec,
                   override: PolicySpec | Mapping[str, Any] | None = None) -> Policy:
    """The policy of one request: the override from the request's extension field (checked
    against what the tenant may use), else the tenant's policy, else the gateway's default.

    The tenant's ``quality_target`` fills a policy's ``target`` parameter when not given.
    """
    base = tenant.policy or default
    spec = base
    if override is not None:
        spec = override if isinstance(override, PolicySpec) else _override_spec(override)
        if not tenant.allows_policy(spec.kind):
            raise PermissionDeniedError(
                f"tenant {tenant.name!r} may not use policy {spec.kind!r}; "
                f"allowed: {tenant.allowed_policies}", param="policy")
        if spec.kind == base.kind:
            spec = PolicySpec(kind=spec.kind, params={**base.params, **spec.params})
    params = dict(spec.params)
    if tenant.quality_target is not None and "target" not in params:
        if spec.kind in POLICY_KINDS and _has_field(spec.kind, "target"):
            params["target"] = tenant.quality_target
    try:
        return build_policy(spec.kind, params)
    except ValueError as exc:
        raise RequestError(str(exc), param="policy") from exc


def _override_spec(value: Mapping[str, Any]) -> PolicySpec:
    try:
        return PolicySpec.model_validate(dict(value))
    except ValueError as exc:
        raise RequestError(f"invalid policy override: {exc}", param="policy") from exc


def _has_field(kind: str, name: str) -> bool:
    policy: Any = build_policy(kind)  # every policy kind is a dataclass
    return any(f.name == name for f in fields(policy))


def check_expert_allowed(tenant: Tenant, expert: str) -> None:
    """PermissionDeniedError (403) when a request names an expert its tenant may not use."""
    if not tenant.allows_expert(expert):
        raise PermissionDeniedError(
            f"tenant {tenant.name!r} may not use expert {expert!r}; "
            f"allowed: {tenant.allowed_experts}", param="model")


# -- guard: tenant x ledger -------------------------------------------------------------------


def budget_state(usage: Sequence[PeriodUsage], request_cap_usd: float | None,
                 now: datetime) -> BudgetState:
    """What the policy sees: the smallest remaining amount of any limited period (a hard cap)
    and the pace of the period furthest behind: the one whose share of budget left is
    smallest relative to its share of time left."""
    limited = [u for u in usage if u.limit_usd is not None]
    if not limited:
        return BudgetState(request_cap_usd=request_cap_usd)

    def pace(u: PeriodUsage) -> float:
        left = max(1e-6, 1.0 - period_elapsed(u.period, now))
        return (u.remaining_usd or 0.0) / u.limit_usd / left  # type: ignore[operator]

    binding = min(limited, key=pace)
    return BudgetState(
        remaining_usd=min(u.remaining_usd or 0.0 for u in limited),
        period_usd=binding.limit_usd,
        period_elapsed=period_elapsed(binding.period, now),
        request_cap_usd=request_cap_usd,
        period_remaining_usd=binding.remaining_usd,
    )


class BudgetGuard:
    """Rate limit, budget state, reserve and settle for the tenants of one gateway.

    The hot path costs one ledger round trip to admit and reserve: the rate limit is counted
    in the same atomic step as the request's first reservation (:meth:`reserve` with
    ``admit=True``). The budget state the policy ranks with (:meth:`state`) is read from the
    ledger at most every ``state_ttl_s`` per tenant and served from memory in between: a
    pacing policy sees spend at most that old, and no request can pass a budget anyway, since
    every reservation is checked atomically.
    """

    def __init__(self, ledger: Ledger, state_ttl_s: float = 1.0) -> None:
        self.ledger = ledger
        self.state_ttl_s = state_ttl_s
        self._states: dict[str, tuple[float, list[PeriodUsage]]] = {}

    async def state(self, tenant: Tenant, now: datetime | None = None) -> BudgetState:
        """The tenant's budget state; refuses (402) at once when a limited period is
        already used up. No ledger read for an unlimited tenant."""
        if all(v is None for v in tenant.limits.values()):
            return BudgetState(request_cap_usd=tenant.request_cap_usd)
        now = now or utcnow()
        usage = await self._usage(tenant, now)
        for u in usage:
            if u.limit_usd is not None and u.remaining_usd == 0.0:
                raise budget_error(tenant.name, u.period, to_nano(u.limit_usd),
                                   to_nano(u.spent_usd), to_nano(u.reserved_usd), 0, now)
        return budget_state(usage, tenant.request_cap_usd, now)

    async def _usage(self, tenant: Tenant, now: datetime) -> list[PeriodUsage]:
        mono = time.monotonic()
        cached = self._states.get(tenant.name)
        if cached is not None and mono - cached[0] < self.state_ttl_s and all(
                u.remaining_usd != 0.0 for u in cached[1] if u.limit_usd is not None):
            return cached[1]
        usage = await self.ledger.usage(tenant.name, tenant.limits, now)
        self._states[tenant.name] = (mono, usage)
        return usage

    async def admit(self, tenant: Tenant, now: datetime | None = None) -> BudgetState:
        """Count the request against the rate limit (429) and return its budget state (for
        requests that reserve nothing, such as cache hits)."""
        await self.count(tenant, now)
        return await self.state(tenant, now)

    async def count(self, tenant: Tenant, now: datetime | None = None) -> None:
        """Count one request against the tenant's rate limit (429 when over)."""
        if tenant.rate_limit.requests_per_minute is not None:
            await self.ledger.hit(tenant.name, tenant.rate_limit.requests_per_minute, now)

    async def reserve(self, tenant: Tenant, amount_usd: float,
                      now: datetime | None = None, *, admit: bool = False) -> Reservation:
        """Hold the estimated maximum cost of an attempt (402 when a budget would be passed);
        with ``admit``, count the request against the rate limit in the same step (429).

        The per-request cap is not checked here: it bounds the cost estimates the policy
        ranks (``BudgetState.request_cap_usd``), see :meth:`unaffordable`."""
        per_minute = tenant.rate_limit.requests_per_minute if admit else None
        res = await self.ledger.reserve(tenant.name, amount_usd, tenant.limits, now,
                                        per_minute=per_minute)
        self._book(tenant.name, res.amount_usd, 0.0)
        return res

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        await self.ledger.settle(reservation, actual_usd)
        self._book(reservation.tenant, -reservation.amount_usd, max(0.0, actual_usd))

    def _book(self, tenant: str, held_usd: float, spent_usd: float) -> None:
        """Apply this process's own reserve / settle to the tenant's remembered state, so
        that it stays exact here between reads (other replicas' spend arrives with them)."""
        cached = self._states.get(tenant)
        if cached is None:
            return
        self._states[tenant] = (cached[0], [
            replace(u, spent_usd=u.spent_usd + spent_usd,
                    reserved_usd=max(0.0, u.reserved_usd + held_usd)) for u in cached[1]])

    async def unaffordable(self, tenant: Tenant, costs: np.ndarray,
                           now: datetime | None = None) -> BudgetExceededError:
        """The 402 when the budget leaves no expert affordable, naming the limit that bites:
        the per-request cap, else the period with the least left."""
        now = now or utcnow()
        finite = costs[np.isfinite(costs)]
        cheapest = float(finite.min()) if finite.size else float("inf")
        if tenant.request_cap_usd is not None and cheapest > tenant.request_cap_usd:
            return request_cap_error(tenant, cheapest)
        usage = [u for u in await self.ledger.usage(tenant.name, tenant.limits, now)
                 if u.limit_usd is not None]
        if not usage:
            return BudgetExceededError(f"no expert is affordable for tenant {tenant.name!r}",
                                       limit="unknown", resets_at=None)
        u = min(usage, key=lambda u: u.remaining_usd or 0.0)
        return budget_error(tenant.name, u.period, to_nano(u.limit_usd or 0.0),
                            to_nano(u.spent_usd), to_nano(u.reserved_usd),
                            to_nano(cheapest, up=True), now)

    async def usage(self, tenant: Tenant, now: datetime | None = None) -> dict[str, Any]:
        """The body of ``GET /v1/usage`` for this tenant."""
        periods = await self.ledger.usage(tenant.name, tenant.limits, now)
        return {
            "object": "usage",
            "tenant": tenant.name,
            "periods": [u.as_dict() for u in periods],
            "request_cap_usd": tenant.request_cap_usd,
            "rate_limit": tenant.rate_limit.model_dump(),
        }


def request_cap_error(tenant: Tenant, amount_usd: float) -> BudgetExceededError:
    return BudgetExceededError(
        f"the estimated cost ${amount_usd:.6f} passes the per-request cap "
        f"${tenant.request_cap_usd:.6f} of tenant {tenant.name!r}",
        limit="request", limit_usd=tenant.request_cap_usd, requested_usd=amount_usd,
        resets_at=None,
    )


