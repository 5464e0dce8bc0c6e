"""Typed configuration: the gateway config and the one loader every YAML file kind goes through.

``load_file(path, Model)`` parses YAML (or JSON) and validates it with a pydantic model; any
problem becomes a :class:`~coe_gateway.errors.ConfigError` naming the file, the field (dotted
path, list indexes included) and the reason. Budget files and evaluation suites use the same
loader with their own models.

Paths inside a config file are resolved relative to that file's directory; ``~`` and
``$VARS`` are expanded.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, overload

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from coe_gateway.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

DEFAULT_MODELS_DIR = "~/.cache/coe-gateway/models"


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(Strict):
    """USD per 1M tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


Capability = Literal["text", "vision", "tools"]


class ExpertConfig(Strict):
    """One expert: a model answered by a backend.

    ``backend`` is a backend kind (:data:`~coe_gateway.workers.backends.BACKENDS`) or a
    worker kind (:data:`~coe_gateway.workers.kinds.WORKER_KINDS`); a worker kind is launched
    locally (by the workers service, or by the gateway process itself in ``launch`` mode).
    backend ``vllm``: the gateway launches ``replicas`` local vLLM OpenAI servers for ``model``
    (a checkpoint directory, resolved under ``models_dir`` when relative, or a hub id already
    in the local cache); ``gpus`` places replica *i* on ``gpus[i]`` (CUDA vLLM) and, when empty,
    the CPU build runs with ``cpu_threads`` cores bound per replica.
    backend ``openai``: any OpenAI-compatible endpoint; ``urls`` lists base URLs (one replica
    each), ``api_key_env`` names the environment variable holding its key.
    backend ``litellm``: a remote provider model string, e.g. ``anthropic/claude-3-5-haiku``.
    backend ``mot``: a fused Mixture-of-Thoughts model served locally
    (:mod:`coe_gateway.workers.kinds.mot`); ``model`` is its directory, ``fused_from`` the
    experts it is made of.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    backend: str
    model: str
    served_name: str | None = None
    urls: list[str] = Field(default_factory=list)
    api_key_env: str | None = None
    replicas: int = Field(1, ge=1)
    gpus: list[list[int]] = Field(default_factory=list)
    cpu_threads: list[str] = Field(default_factory=list)
    price: Price = Price()
    capabilities: list[Capability] = Field(default_factory=lambda: list[Capability](["text"]))
    context_length: int = Field(2048, ge=16)
    vllm_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="request fields applied when the caller did not set them (e.g. stop)",
    )
    quality_prior: float | None = Field(None, ge=0, le=1)
    mean_output_tokens: float = Field(256, gt=0)
    timeout_s: float = Field(120, gt=0)
    fused_from: list[str] = Field(
        default_factory=list,
        description="a fused expert (backend `mot`): the names of the experts of this config "
                    "it is made of; when `price` is not set, its price is the sum of theirs "
                    "(every answer runs them all)",
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        known = backend_kinds()
        if backend not in known:
            names = ", ".join(repr(k) for k in sorted(known))
            raise ValueError(f"unknown backend {backend!r}; known: {names}")
        return backend

    @model_validator(mode="after")
    def _check_backend_fields(self) -> ExpertConfig:
        if self.backend == "openai" and not self.urls:
            raise ValueError("backend 'openai' needs at least one entry in 'urls'")
        if self.gpus and len(self.gpus) != self.replicas:
            raise ValueError(f"'gpus' has {len(self.gpus)} entries for {self.replicas} replicas")
        if self.cpu_threads and len(self.cpu_threads) != self.replicas:
            raise ValueError(
                f"'cpu_threads' has {len(self.cpu_threads)} entries for {self.replicas} replicas"
            )
        return self

    @property
    def upstream_model(self) -> str:
        """The model name sent upstream."""
        return self.served_name or self.name


class RouterSpec(Strict):
    """A router the server loads: ``kind`` from the router registry, ``path`` to its saved
    artefacts (directory with safetensors + JSON), ``options`` passed to its constructor."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: str
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class PolicySpec(Strict):
    """A policy: ``kind`` from the policy registry and its parameters."""

    kind: str = "trade-off"
    params: dict[str, Any] = Field(default_factory=dict)


class StrategySpec(Strict):
    """A strategy: ``kind`` from the strategy registry (``fallback``, ``single``, ...) and its
    parameters."""

    kind: str = "fallback"
    params: dict[str, Any] = Field(default_factory=dict)


class RoutingConfig(Strict):
    default_router: str = "prior"
    routers: list[RouterSpec] = Field(default_factory=lambda: [RouterSpec(name="prior", kind="prior")])
    policy: PolicySpec = PolicySpec()
    fallbacks: int = Field(1, ge=0, description="further experts tried when one fails")
    strategy: StrategySpec = StrategySpec()
    routing_log: str | None = None

    @model_validator(mode="after")
    def _default_exists(self) -> RoutingConfig:
        names = [r.name for r in self.routers]
        if len(set(names)) != len(names):
            raise ValueError(f"router names must be unique, got {names}")
        if self.default_router not in names:
            raise ValueError(f"default_router {self.default_router!r} is not one of {names}")
        return self


class ServerConfig(Strict):
    """The HTTP server. ``workers`` > 1: ``coe-gateway serve`` runs that many gateway
    processes sharing the port (``SO_REUSEPORT``) over one workers service; ``cpu_affinity``
    pins gateway process *i* to the *i*-th allowed core (modulo their number)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_request_bytes: int = Field(4_000_000, ge=1024)
    workers: int = Field(1, ge=1, le=256, description="gateway processes of `serve`")
    cpu_affinity: bool = False


WorkersMode = Literal["auto", "launch", "attach"]


class WorkersConfig(Strict):
    """How the supervisor runs local workers, and how a gateway process finds them.

    ``mode``: ``launch`` (this gateway process launches and supervises its workers),
    ``attach`` (it routes over the workers a ``coe-gateway workers`` service publishes in
    ``fleet_file``, and launches nothing), ``auto`` (``launch`` when ``server.workers`` is 1;
    else ``serve`` runs one workers service and every gateway process attaches).
    ``fleet_file``: where the service publishes its workers (default, for a config loaded
    from a file: ``~/.cache/coe-gateway/fleet-<sha256 of its absolute path, 12 hex>.json``;
    relative paths resolve against the config file). A published replica counts as
    unhealthy once the publisher's heartbeat is older than ``fleet_stale_s``.
    """

    base_port: int = Field(8100, ge=1024, le=65000)
    ready_timeout_s: float = Field(600, gt=0)
    health_interval_s: float = Field(2.0, gt=0)
    restart_backoff_s: float = Field(1.0, gt=0)
    restart_backoff_max_s: float = Field(60.0, gt=0)
    log_dir: str = "~/.cache/coe-gateway/logs"
    python: str | None = Field(None, description="interpreter for workers; default: this one")
    mode: WorkersMode = "auto"
    fleet_file: str | None = None
    fleet_stale_s: float = Field(10.0, gt=0)


class CacheConfig(Strict):
    enabled: bool = True
    ttl_s: int = Field(3600, ge=1)
    semantic: bool = False
    semantic_threshold: float = Field(0.95, gt=0, le=1)


def _host_pattern(value: str) -> str:
    """An ``images.remote.allow_hosts`` entry: a host name or IP literal, or ``*.domain``
    (any subdomain of it); lower-cased, no scheme, port, path or bare ``*``."""
    import ipaddress

    host = value.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))  # an IP literal, canonical form
    except ValueError:
        pass
    bare = host[2:] if host.startswith("*.") else host
    if not bare or any(c in bare for c in "*/:@ "):
        raise ValueError(f"{value!r} is not a host name, an IP address or '*.domain' (no "
                         "scheme, port, path or bare '*')")
    return host


class ImageTimeouts(Strict):
    """Timeouts of one remote image fetch, in seconds."""

    connect_s: float = Field(2.0, gt=0)
    read_s: float = Field(5.0, gt=0, description="between two reads of the body")
    total_s: float = Field(10.0, gt=0)


class RemoteImagesConfig(Strict):
    """Remote ``http(s)`` image URLs: off by default. When on, only ``allow_hosts`` (exact
    host, or ``*.example.com`` for its subdomains; empty: refuse all), https unless
    ``allow_http``; hosts that resolve to private, loopback, link-local, multicast, reserved
    or unspecified addresses are refused unless ``allow_private_networks`` (for tests and
    trusted internal networks only)."""

    enabled: bool = False
    allow_hosts: list[Annotated[str, AfterValidator(_host_pattern)]] = Field(
        default_factory=list)
    allow_http: bool = False
    allow_private_networks: bool = Field(
        False, description="for tests and trusted internal networks only")
    timeouts: ImageTimeouts = ImageTimeouts()
    max_redirects: int = Field(0, ge=0, le=3, description="each hop is checked again")


class ImagesConfig(Strict):
    """Image parts of requests: caps (OpenAI's 20 MiB per image by default), remote images,
    and how image features are computed for an image-aware router (the kinds are the
    router's own, as it was trained): ``feature_options`` (extractor kind -> runtime options
    over the router's, e.g. ``clip: {device: cuda}``, ``pixels: {batch_size: 8}``) and
    ``feature_threads`` (torch intra-op threads of the gateway process once an extractor
    loads: 1 by default, as the gateway runs one process per core and a second torch thread
    only contends with the event loop; None leaves torch's default)."""

    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="decoded, per image")
    max_pixels: int = Field(33_000_000, ge=1, description="width x height, per image")
    max_images: int = Field(10, ge=1, description="image parts per request")
    remote: RemoteImagesConfig = RemoteImagesConfig()
    feature_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    feature_threads: int | None = Field(1, ge=1)


class GatewayConfig(Strict):
    """The whole gateway config (``configs/embedded.yaml`` is the embedded default)."""

    experts: list[ExpertConfig] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    server: ServerConfig = ServerConfig()
    workers: WorkersConfig = WorkersConfig()
    cache: CacheConfig = CacheConfig()
    images: ImagesConfig = ImagesConfig()
    redis_url: str | None = None
    budget_file: str | None = None
    models_dir: str = DEFAULT_MODELS_DIR

    @model_validator(mode="after")
    def _one_launcher(self) -> GatewayConfig:
        if self.workers.mode == "launch" and self.server.workers > 1:
            raise ValueError("workers.mode 'launch' launches the workers in the gateway "
                             "process: with server.workers > 1 use 'auto' or 'attach'")
        return self

    @field_validator("experts")
    @classmethod
    def _unique_experts(cls, experts: list[ExpertConfig]) -> list[ExpertConfig]:
        dupes = repeated([e.name for e in experts])
        if dupes:
            raise ValueError(f"expert names must be unique; repeated: {dupes}")
        return experts

    @field_validator("experts")
    @classmethod
    def _fused_prices(cls, experts: list[ExpertConfig]) -> list[ExpertConfig]:
        return fused_prices(experts)

    @cached_property
    def experts_by_name(self) -> dict[str, ExpertConfig]:
        return {e.name: e for e in self.experts}

    def expert(self, name: str) -> ExpertConfig:
        """The expert called ``name`` (KeyError when there is none); a dict look-up."""
        return self.experts_by_name[name]

    @cached_property
    def expert_names(self) -> list[str]:
        return [e.name for e in self.experts]

    def model_path(self, expert: ExpertConfig) -> str:
        """The checkpoint path of a local (vllm, mot) expert: absolute, or under ``models_dir``."""
        p = Path(expand(expert.model))
        if p.is_absolute() or p.exists():
            return str(p)
        candidate = Path(expand(self.models_dir)) / expert.model
        return str(candidate)


def fused_prices(experts: list[ExpertConfig]) -> list[ExpertConfig]:
    """``experts`` with every ``fused_from`` checked (names of other experts in the list:
    ValueError naming the field otherwise) and, for a fused expert whose ``price`` is not
    set, that price: the sum of its parts' (themselves summed when they are fused)."""
    by_name = {e.name: e for e in experts}
    for i, e in enumerate(experts):
        for name in e.fused_from:
            if name not in by_name or name == e.name:
                others = ", ".join(n for n in by_name if n != e.name)
                raise ValueError(f"experts[{i}].fused_from: {name!r} is not another expert of "
                                 f"this config (they are: {others})")

    def price(e: ExpertConfig, seen: tuple[str, ...]) -> Price:
        if not e.fused_from or "price" in e.model_fields_set:
            return e.price
        if e.name in seen:
            raise ValueError(f"experts: fused_from is circular: {' -> '.join([*seen, e.name])}")
        parts = [price(by_name[n], (*seen, e.name)) for n in e.fused_from]
        return Price(input_per_mtok=round(sum(p.input_per_mtok for p in parts), 12),
                     output_per_mtok=round(sum(p.output_per_mtok for p in parts), 12))

    return [e.model_copy(update={"price": price(e, ())})
            if e.fused_from and "price" not in e.model_fields_set else e for e in experts]


def backend_kinds() -> set[str]:
    """Every valid ``experts[].backend``: the backend kinds and the worker kinds."""
    from coe_gateway.workers.backends import BACKENDS  # late: the registries import config
    from coe_gateway.workers.kinds import WORKER_KINDS

    return set(BACKENDS) | set(WORKER_KINDS)


DEFAULT_FLEET_DIR = "~/.cache/coe-gateway"


def default_fleet_file(config_path: str | Path | None) -> str:
    """The fleet file of a config without ``workers.fleet_file``: one per config file (by
    the sha256 of its absolute path), ``fleet.json`` for a config not read from a file."""
    if config_path is None:
        return str(Path(expand(DEFAULT_FLEET_DIR)) / "fleet.json")
    digest = hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:12]
    return str(Path(expand(DEFAULT_FLEET_DIR)) / f"fleet-{digest}.json")


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (for uniqueness validators)."""
    return sorted(n for n, count in Counter(names).items() if count > 1)


def expand(value: str) -> str:
    """Expand ``~`` and ``$VARS`` in a path-like string."""
    return os.path.expanduser(os.path.expandvars(value))


@overload
def resolve_path(value: str, base: Path) -> str: ...
@overload
def resolve_path(value: None, base: Path) -> None: ...
def resolve_path(value: str | None, base: Path) -> str | None:
    """``value`` expanded and, when relative, made absolute against ``base`` (the directory
    of the file it was written in)."""
    if value is None:
        return None
    p = Path(expand(value))
    return str(p if p.is_absolute() else (base / p).resolve())


PATH_OPTIONS = ("label_files", "models_json")
"""Router options naming files; so do ``encoder.model`` and ``encoder.path``."""


def resolve_option_paths(options: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """``options`` with every relative file path in it made absolute against ``base`` (the
    directory of the file the options were written in: a suite, an options YAML), ``~`` and
    ``$VARS`` expanded. Other values are left as they are."""

    def one(value: Any) -> Any:
        return resolve_path(value, base) if isinstance(value, str) else value

    out = dict(options)
    for key in PATH_OPTIONS:
        if isinstance(out.get(key), list):
            out[key] = [one(v) for v in out[key]]
        elif key in out:
            out[key] = one(out[key])
    if isinstance(out.get("encoder"), Mapping):
        enc = dict(out["encoder"])
        out["encoder"] = {**enc, **{k: one(enc[k]) for k in ("model", "path") if enc.get(k)}}
    return out


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML/JSON file, raising ConfigError (with line) on a syntax error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "<file>", f"cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<syntax>"
        raise ConfigError(str(p), where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc


def validate(path: str | Path, data: Any, model: type[M]) -> M:
    """Validate parsed data against ``model``; the first error becomes a ConfigError."""
    if data is None:
        raise ConfigError(str(path), "<root>", "the file is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
        raise ConfigError(str(path), _field_path(tuple(err["loc"])), err["msg"] + more) from exc


def load_file(path: str | Path, model: type[M]) -> M:
    """Load and validate one YAML/JSON file of any kind."""
    return validate(path, read_yaml(path), model)


def _resolve_relative(cfg: GatewayConfig, path: Path) -> GatewayConfig:
    base = path.resolve().parent

    def rel(v: str | None) -> str | None:
        return resolve_path(v, base)

    routing = cfg.routing.model_copy(
        update={
            "routers": [r.model_copy(update={"path": rel(r.path),
                                             "options": resolve_option_paths(r.options, base)})
                        for r in cfg.routing.routers],
            "routing_log": rel(cfg.routing.routing_log),
        }
    )
    workers = cfg.workers.model_copy(
        update={"fleet_file": rel(cfg.workers.fleet_file) or default_fleet_file(path)})
    return cfg.model_copy(update={"routing": routing, "budget_file": rel(cfg.budget_file),
                                  "workers": workers,
                                  "experts": [_model_beside(e, base) for e in cfg.experts]})


def _model_beside(expert: ExpertConfig, base: Path) -> ExpertConfig:
    """An expert whose worker kind keeps its model beside the config (``mot``: a small
    trained directory) with a relative ``model`` that exists under ``base``: made absolute.
    Any other ``model`` stays as written (resolved under ``models_dir`` later)."""
    from coe_gateway.workers.kinds import WORKER_KINDS  # late: the registry imports config

    beside_config = getattr(WORKER_KINDS.get(expert.backend), "model_beside_config", False)
    if not beside_config or Path(expand(expert.model)).is_absolute():
        return expert
    beside = Path(resolve_path(expert.model, base))
    return expert.model_copy(update={"model": str(beside)}) if beside.exists() else expert


def load_config(path: str | Path) -> GatewayConfig:
    """Load the gateway config; relative router, budget and fleet-file paths resolve against
    the file (a missing ``workers.fleet_file`` gets its per-file default; so does a fused
    expert's ``model`` that exists there), and a router ``path`` must hold a saved router
    (``router.json``)."""
    cfg = _resolve_relative(load_file(path, GatewayConfig), Path(path))
    for i, r in enumerate(cfg.routing.routers):
        if r.path is not None and not (Path(r.path) / "router.json").is_file():
            raise ConfigError(str(path), f"routing.routers[{i}].path",
                              f"no saved router (router.json) in {r.path}")
    return cfg
