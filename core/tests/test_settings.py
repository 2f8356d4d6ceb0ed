"""The settings groups plugins compose their config schemas from, and the readers of them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from singer_sdk import typing as th

from ml_connector_core import settings
from ml_connector_core.ledger import LEDGER_URL_ENV


def _schema(properties: list[th.Property]) -> dict:
    return th.PropertiesList(*properties).to_dict()["properties"]


def _secrets(schema: dict) -> set[str]:
    return {name for name, prop in schema.items() if prop.get("secret")}


def test_sage300_connection_group() -> None:
    schema = _schema(settings.sage300_connection_properties())
    assert list(schema) == ["base_url", "username", "password", "keep_password_case",
                            "verify_tls", "connect_timeout", "read_timeout",
                            "cost_center_segment"]
    assert _secrets(schema) == {"password"}
    assert {name: prop.get("default") for name, prop in schema.items()} == {
        "base_url": None, "username": None, "password": None, "keep_password_case": False,
        "verify_tls": True, "connect_timeout": 10, "read_timeout": 120,
        "cost_center_segment": 2}


def test_basware_connection_group_takes_the_plugins_scopes() -> None:
    schema = _schema(settings.basware_connection_properties(default_scopes="a.read b.write"))
    assert list(schema) == ["region", "base_url", "client_id", "client_secret", "scopes",
                            "verify_tls", "read_timeout", "source_system"]
    assert _secrets(schema) == {"client_secret"}
    assert schema["region"]["default"] == "eu"
    assert sorted(schema["region"]["enum"]) == ["au", "ca", "eu", "us"]
    assert schema["scopes"]["default"] == "a.read b.write"
    assert (schema["read_timeout"]["default"], schema["source_system"]["default"]) == \
        (60, "SAGE300")


def test_ledger_and_dry_run_groups() -> None:
    ledger = _schema(settings.ledger_properties())
    assert _secrets(ledger) == {"ledger_url"}
    assert "else the SQLite file" in ledger["ledger_url"]["description"]
    off = _schema(settings.ledger_properties(unset="no ledger"))
    assert off["ledger_url"]["description"].endswith("else no ledger")
    dry_run = _schema(settings.dry_run_properties())
    assert list(dry_run) == ["dry_run", "dry_run_report"]
    assert dry_run["dry_run"]["default"] is False and not _secrets(dry_run)


def test_ledger_url_setting_then_environment_then_project_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    assert settings.configured_ledger_url({}, default=False) is None
    assert settings.configured_ledger_url({}) == \
        f"sqlite:///{tmp_path.resolve() / '.ml-connector' / 'ledger.sqlite'}"
    monkeypatch.setenv(LEDGER_URL_ENV, "sqlite:///env.sqlite")
    assert settings.configured_ledger_url({}, default=False) == "sqlite:///env.sqlite"
    assert settings.configured_ledger_url({"ledger_url": "sqlite:///set.sqlite"}) == \
        "sqlite:///set.sqlite"


def test_clients_are_built_from_a_plugin_config() -> None:
    sage = settings.sage300_client(
        {"base_url": "https://erp.example.com/Sage300WebApi/v1.0/-/", "username": "webapi",
         "password": "pw", "verify_tls": False, "read_timeout": 5}, "SAMINC")
    assert sage.url("AP/APVendors") == \
        "https://erp.example.com/Sage300WebApi/v1.0/-/SAMINC/AP/APVendors"
    assert (sage.username, sage.verify_tls, sage.policy.timeout) == ("WEBAPI", False, (10, 5))
    assert settings.cost_center_field({"cost_center_segment": 3}) == "AccountSegmentCode3"

    basware = settings.basware_client({"client_id": "id", "client_secret": "secret",
                                       "region": "us"}, default_scopes="vendors.read")
    assert basware.base_url == "https://api.us.basware.com"
    assert basware.tokens.scopes == "vendors.read"
    assert basware.policy.timeout[1] == 60


def test_tls_off_is_one_loud_warning_naming_the_system(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test-settings")
    with caplog.at_level(logging.WARNING, logger="test-settings"):
        assert settings.warn_if_sage300_tls_off({"base_url": "https://erp"}, logger) is True
        assert caplog.records == []
        assert settings.warn_if_sage300_tls_off(
            {"base_url": "https://erp", "verify_tls": False}, logger) is False
        assert settings.warn_if_basware_tls_off({"verify_tls": False}, logger) is False
    sage, basware = (record.getMessage() for record in caplog.records)
    assert sage.startswith("!!! verify_tls is OFF: Sage 300's TLS certificate is NOT checked")
    assert "https://erp" in sage and "Basic credentials" in sage
    assert "Basware's" in basware and "https://api.basware.com" in basware
