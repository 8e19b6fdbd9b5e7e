"""One typed, immutable settings object, read from `LEADGATE_*` and an optional TOML file.

Precedence, highest first: environment variables, the TOML file named by `LEADGATE_CONFIG`
(or passed to `load_settings`), then the defaults here. Every option is documented in
`config/leadgate.example.toml`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.crypto import parse_key

DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def _split_numbers(value: Any) -> Any:
    """`0,5,300` from the environment; a TOML list passes through."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _split_keys(value: Any) -> Any:
    """`key1,key2` from the environment; a TOML list passes through."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class SettingsError(Exception):
    """A setting has a bad value; the message names it."""


class Settings(BaseSettings):
    """Everything Leadgate can be told; a test builds one with the fields it needs."""

    model_config = SettingsConfigDict(
        env_prefix="LEADGATE_",
        frozen=True,
        extra="forbid",
        validate_default=True,
        # A bad secret key (or token) must not be echoed in an error message.
        hide_input_in_errors=True,
    )

    database_url: str | None = Field(
        None, description="Postgres DSN. Unset: `leadgate dev` starts an embedded Postgres."
    )
    redis_url: str | None = Field(
        None, description="Redis URL. Unset: `leadgate dev` starts an embedded Redis."
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    processes: int = Field(
        1, ge=1, le=64, description="Gateway processes `leadgate serve` runs on the one port."
    )
    data_dir: Path = Field(
        Path(".leadgate"), description="Where `leadgate dev` keeps its embedded servers' data."
    )
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(20, ge=1)
    db_statement_cache_size: int = Field(
        100,
        ge=0,
        description="Prepared statements each Postgres connection keeps (asyncpg); 0 behind "
        "PgBouncer in transaction mode.",
    )
    listen_database_url: str | None = Field(
        None,
        description="A direct Postgres DSN for the key listener's LISTEN (not through PgBouncer "
        "in transaction mode); unset: database_url.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024)
    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    default_phone_region: str | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="ISO country for phone numbers written without +country code.",
    )
    idempotency_ttl_seconds: int = Field(86_400, ge=60)
    auth_cache_seconds: float = Field(
        2.0, ge=0, le=60, description="How long a gateway remembers a valid key; 0: not at all."
    )
    rate_limit: int = Field(
        6000, ge=0, description="Requests per minute per API key; 0 turns rate limiting off."
    )
    batch_max_items: int = Field(
        100, ge=1, le=10_000, description="Most writes one group-committed transaction applies."
    )
    batch_max_wait: float = Field(
        0.002, ge=0, le=1, description="Longest a write waits for others to share its commit (s)."
    )
    batch_concurrency: int = Field(
        2, ge=1, le=64, description="Batches one gateway process commits at the same time."
    )
    rescore_interval: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How often a gateway looks for a rescore of leads left to it (s).",
    )

    retry_schedule: Annotated[tuple[float, ...], NoDecode, BeforeValidator(_split_numbers)] = Field(
        DEFAULT_RETRY_SCHEDULE, description="Delay before each attempt, in seconds."
    )
    delivery_timeout: float = Field(10.0, gt=0, le=300)
    retry_after_cap: float = Field(
        3600.0, gt=0, description="Longest Retry-After (429/503) honoured, in seconds."
    )
    allow_private_destinations: bool = False
    worker_concurrency: int = Field(100, ge=1, le=10_000)
    worker_poll_delay: float = Field(0.005, gt=0, le=5)
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Where a worker serves /metrics; unset: not served."
    )
    relay_interval: float = Field(
        5.0, gt=0, description="Longest a worker goes without looking for due deliveries (s)."
    )
    circuit_failures: int = Field(5, ge=1)
    circuit_cooldown: float = Field(60.0, gt=0)
    endpoint_disable_after: float = Field(5 * 86_400, gt=0)
    dashboard_session_seconds: float = Field(
        43_200, ge=60, le=30 * 86_400, description="How long a dashboard sign-in lasts."
    )
    dashboard_secure_cookie: bool = Field(
        False, description="Mark the dashboard's cookie Secure even when the request is plain HTTP."
    )

    # Security and data lifetime.
    secret_keys: Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(_split_keys)] = Field(
        (), description="Keys that encrypt secrets at rest; the first encrypts, all decrypt."
    )
    retention_days: float = Field(
        30.0, ge=0, description="Days ended deliveries and their events are kept; 0: forever."
    )
    retention_interval: float = Field(300.0, gt=0, description="Seconds between two prunes.")
    metrics_token: SecretStr | None = Field(
        None, description="When set, /metrics needs `Authorization: Bearer <token>`."
    )
    egress_proxy: str | None = Field(
        None, description="http://host:port of a forward proxy every delivery goes through."
    )

    @field_validator("retry_schedule")
    @classmethod
    def _schedule_is_sane(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("needs at least one attempt, e.g. 0,5,300")
        if any(v < 0 for v in value):
            raise ValueError("delays are seconds and cannot be negative")
        return value

    @field_validator("secret_keys")
    @classmethod
    def _keys_are_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(value, start=1):
            parse_key(key.get_secret_value(), position)
        return value

    @field_validator("egress_proxy")
    @classmethod
    def _proxy_is_http(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError("must be http://host:port (an HTTP forward proxy)")
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _region_upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)

    # The TOML file a subclass made by `load_settings` reads; the base class reads none.
    toml_file: ClassVar[Path | None] = None


def load_settings(config_file: Path | None = None) -> Settings:
    """Load settings once at start-up; raise SettingsError naming every bad setting.

    The TOML file is `config_file`, else the one LEADGATE_CONFIG names, else none.
    """
    if config_file is None and (named := os.environ.get("LEADGATE_CONFIG")):
        config_file = Path(named)
    if config_file is not None and not config_file.is_file():
        raise SettingsError(f"LEADGATE_CONFIG: no such file: {config_file}")
    cls = Settings
    if config_file is not None:

        class FromFile(Settings):
            toml_file = config_file

        cls = FromFile
    try:
        return cls()
    except ValidationError as e:
        raise SettingsError(describe_errors(e)) from e
    except ValueError as e:  # a TOML file that does not parse
        raise SettingsError(f"LEADGATE_CONFIG: {e}") from e


def describe_errors(error: ValidationError) -> str:
    """One line per bad setting, named as the operator would set it."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        lines.append(f"LEADGATE_{name.upper()} ({name}): {item['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
