"""Server configuration: one dataclass, settable by CLI flag and by ``LATENTDIAL_<FIELD>`` env var.

Precedence: command-line flag > environment variable > default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from latentdial.v1 import DEFAULT_MAX_MESSAGE_MB

ENV_PREFIX = "LATENTDIAL_"
#: none: serve what loads at start-up; poll: follow the repository; explicit: LoadModel / UnloadModel RPCs.
MODEL_CONTROL_MODES = ("none", "poll", "explicit")


@dataclass
class ServerConfig:
    """Everything ``latentdial serve`` can be told."""

    repository: str = "models"
    #: the gRPC and HTTP ports' address: loopback unless told otherwise (containers pass 0.0.0.0)
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9090  # 0 disables the Prometheus endpoint
    #: the metrics port's address, loopback by default (containers pass 0.0.0.0 for their scrapers)
    metrics_host: str = "127.0.0.1"
    http: bool = True  # HTTP front door: OIP v2 REST, REST API, slider page, docs, /metrics
    http_port: int = 8000  # 0 picks a free port
    runtime: str = "auto"
    max_batch_size: int = 64
    max_queue_delay_ms: float = 2.0
    max_queue_size: int = 1024
    batching: bool = True
    #: on: an idle runtime takes a request at once and batches gather only while one runs;
    #: off: every batch also waits up to max_queue_delay_ms for company (bigger batches, more latency)
    adaptive_batching: bool = True
    max_message_mb: int = DEFAULT_MAX_MESSAGE_MB
    max_request_items: int = 1024
    #: requests being handled at once, over every front door; more get RESOURCE_EXHAUSTED / 429
    max_in_flight: int = 256
    #: deadline of a request that names none (gRPC without a deadline, HTTP without X-Request-Timeout),
    #: and the longest an HTTP X-Request-Timeout header may ask for
    request_timeout_s: float = 60.0
    #: numbers, strings and arrays one JSON body may hold (each costs about 100 bytes while parsing)
    max_json_values: int = 262144
    grace_s: float = 10.0
    token: str | None = None  # bearer token; None disables auth
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None  # given: clients must present a cert signed by it (mTLS)
    #: with TLS configured, serve the HTTP and metrics ports in plain text anyway (a TLS-terminating
    #: proxy in front); without it they take the same certificate, key and client CA as gRPC
    http_plaintext: bool = False
    log_format: str = "text"  # text | json
    workers: int = 1
    model_control: str = "none"  # none | poll | explicit (after Triton's model-control modes)
    poll_interval_s: float = 5.0  # poll: seconds between repository scans
    default_model: str | None = None  # "name" or "name/version"; overrides <repository>/default
    #: Share the gRPC port through SO_REUSEPORT. Only the supervisor sets it, for its own workers
    #: (env only, no flag): a lone server that shares a port silently splits another's traffic.
    reuse_port: bool = field(default=False, metadata={"flag": False})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with what to fix."""
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {self.log_format!r}")
        for name in ("max_batch_size", "max_queue_size", "max_message_mb", "max_request_items", "workers",
                     "max_in_flight", "max_json_values"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue_delay_ms < 0 or self.grace_s < 0:
            raise ValueError("max_queue_delay_ms and grace_s must be >= 0")
        if self.model_control not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control must be one of {', '.join(MODEL_CONTROL_MODES)}, got {self.model_control!r}")
        if self.model_control == "explicit" and int(self.workers) > 1:
            raise ValueError(
                "model_control 'explicit' needs one process: with --workers N a LoadModel / UnloadModel "
                "call reaches one worker only; use --model-control poll with several workers"
            )
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if self.poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {self.poll_interval_s}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")

    @property
    def tls(self) -> bool:
        """True when gRPC serves TLS (and so do HTTP and metrics, unless ``http_plaintext``)."""
        return bool(self.tls_cert)

    @property
    def http_tls(self) -> bool:
        """True when the HTTP and metrics ports serve TLS."""
        return self.tls and not self.http_plaintext

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb) * 1024 * 1024

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _field_type(f: Any) -> type:
    t = str(f.type)
    if t.startswith("bool"):
        return bool
    if t.startswith("int"):
        return int
    if t.startswith("float"):
        return float
    return str


def _parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (on/off, true/false, 1/0), got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` flag per ServerConfig field; defaults stay None so env vars can fill in."""
    for f in fields(ServerConfig):
        if not f.metadata.get("flag", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = _field_type(f)
        env = ENV_PREFIX + f.name.upper()
        default = None if f.default is MISSING else f.default
        help_ = f"(env {env}; default {default})"
        if typ is bool:
            parser.add_argument(flag, type=_parse_bool, default=None, metavar="on|off", help=help_)
        else:
            parser.add_argument(flag, type=typ, default=None, help=help_)


def config_from_sources(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> ServerConfig:
    """Resolve flag > env > default for every field."""
    env = dict(os.environ if env is None else env)
    kwargs: dict[str, Any] = {}
    for f in fields(ServerConfig):
        value = getattr(args, f.name, None) if args is not None else None
        if value is None and (ENV_PREFIX + f.name.upper()) in env:
            raw = env[ENV_PREFIX + f.name.upper()]
            typ = _field_type(f)
            try:
                value = _parse_bool(raw) if typ is bool else typ(raw)
            except ValueError as e:
                raise ValueError(f"environment variable {ENV_PREFIX + f.name.upper()}={raw!r}: {e}") from e
        if value is not None:
            kwargs[f.name] = value
    return ServerConfig(**kwargs)
