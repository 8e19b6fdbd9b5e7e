"""Settings: `LEADGATE_*` over a TOML file over defaults; a bad value is named; immutable."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from gateway.cli import main
from gateway.settings import Settings, SettingsError, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "leadgate.example.toml"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No `LEADGATE_*` from outside; and none left behind, including the LEADGATE_CONFIG that
    `load_settings` records when it is handed a file."""
    for name in [n for n in os.environ if n.startswith("LEADGATE_")]:
        monkeypatch.delenv(name)
    yield
    os.environ.pop("LEADGATE_CONFIG", None)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leadgate.toml"
    path.write_text(text)
    return path


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.log_format) == ("127.0.0.1", 8080, "auto")
    assert settings.database_url is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADGATE_PORT", "9000")
    monkeypatch.setenv("LEADGATE_DATABASE_URL", "postgresql://db.internal/leadgate")
    monkeypatch.setenv("LEADGATE_LOG_FORMAT", "json")
    monkeypatch.setenv("LEADGATE_MAX_BODY_BYTES", "2048")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.database_url == "postgresql://db.internal/leadgate"
    assert settings.log_format == "json"
    assert settings.max_body_bytes == 2048


def test_retry_schedule_is_read_as_comma_separated_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADGATE_RETRY_SCHEDULE", "0, 5,300")
    assert load_settings().retry_schedule == (0.0, 5.0, 300.0)


def test_toml_file_named_by_leadgate_config_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, 'port = 9100\nlog_format = "console"\n')
    monkeypatch.setenv("LEADGATE_CONFIG", str(path))
    settings = load_settings()
    assert (settings.port, settings.log_format) == (9100, "console")


def test_toml_file_passed_as_argument_is_read(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'host = "0.0.0.0"\nmax_body_bytes = 4096\n')
    settings = load_settings(path)
    assert (settings.host, settings.max_body_bytes) == ("0.0.0.0", 4096)


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, 'port = 9100\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("LEADGATE_PORT", "9200")
    settings = load_settings(path)
    assert (settings.port, settings.host) == (9200, "0.0.0.0")


def test_non_numeric_port_raises_settings_error_naming_leadgate_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADGATE_PORT", "abc")
    with pytest.raises(SettingsError, match="LEADGATE_PORT"):
        load_settings()


def test_unknown_log_format_raises_settings_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADGATE_LOG_FORMAT", "yaml")
    with pytest.raises(SettingsError, match="LEADGATE_LOG_FORMAT") as raised:
        load_settings()
    assert "LEADGATE_PORT" not in str(raised.value)


def test_every_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADGATE_PORT", "70000")
    monkeypatch.setenv("LEADGATE_RETRY_SCHEDULE", "0,-5")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "LEADGATE_PORT" in str(raised.value)
    assert "LEADGATE_RETRY_SCHEDULE" in str(raised.value)


def test_unknown_key_in_toml_raises_settings_error_naming_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 9100\nprot = 9200\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(path)


def test_bad_value_in_toml_raises_settings_error_naming_the_setting(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = "abc"\n')
    with pytest.raises(SettingsError, match="LEADGATE_PORT"):
        load_settings(path)


def test_unparsable_toml_raises_settings_error_naming_leadgate_config(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = = 1\n")
    with pytest.raises(SettingsError, match="LEADGATE_CONFIG"):
        load_settings(path)


def test_missing_config_file_raises_settings_error_naming_leadgate_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADGATE_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match="LEADGATE_CONFIG"):
        load_settings()


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.port = 9000  # type: ignore[misc]
    assert settings.port == 8080


def test_cli_with_a_bad_config_exits_non_zero_naming_the_setting(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = "abc"\n')
    result = CliRunner().invoke(
        main, ["--config", str(path), "migrate"], env={"LEADGATE_CONFIG": None}
    )
    assert result.exit_code == 1, result.output
    assert "LEADGATE_PORT" in result.output
    assert "schema is up to date" not in result.output


def test_cli_with_a_bad_environment_value_exits_non_zero_naming_it() -> None:
    result = CliRunner().invoke(
        main, ["migrate"], env={"LEADGATE_LOG_FORMAT": "yaml", "LEADGATE_CONFIG": None}
    )
    assert result.exit_code == 1, result.output
    assert "LEADGATE_LOG_FORMAT" in result.output


def test_example_config_loads_and_names_only_real_settings() -> None:
    options = tomllib.loads(EXAMPLE.read_text())
    assert set(options) <= set(Settings.model_fields)
    load_settings(EXAMPLE)


def test_example_config_shows_each_option_it_sets_with_its_default() -> None:
    options = tomllib.loads(EXAMPLE.read_text())
    loaded, defaults = load_settings(EXAMPLE), Settings()
    assert {k: getattr(loaded, k) for k in options} == {k: getattr(defaults, k) for k in options}


def test_example_config_mentions_every_setting() -> None:
    text = EXAMPLE.read_text()
    missing = [name for name in Settings.model_fields if f"{name} =" not in text]
    assert missing == []


@pytest.mark.parametrize("proxy", ["https://proxy:3128", "proxy:3128", "http://proxy"])
def test_an_egress_proxy_must_be_an_http_host_and_port(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    monkeypatch.setenv("LEADGATE_EGRESS_PROXY", proxy)
    with pytest.raises(SettingsError, match="LEADGATE_EGRESS_PROXY"):
        load_settings()


def test_an_http_egress_proxy_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADGATE_EGRESS_PROXY", "http://proxy.internal:3128")
    assert load_settings().egress_proxy == "http://proxy.internal:3128"
