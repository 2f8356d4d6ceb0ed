"""Settings that change how the target reaches Basware."""

from __future__ import annotations

from pathlib import Path

import pytest

from target_basware.target import DEFAULT_SCOPES, TargetBasware


def _target(tmp_path: Path, **config: object) -> TargetBasware:
    return TargetBasware(config={"client_id": "id", "client_secret": "secret-value",
                                 "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
                                 **config})


@pytest.mark.parametrize(("region", "host"), [("eu", "https://api.basware.com"),
                                              ("us", "https://api.us.basware.com")])
def test_region_picks_the_host_and_base_url_wins(tmp_path, region, host):
    assert _target(tmp_path, region=region)._make_client().base_url == host
    explicit = _target(tmp_path, region=region, base_url="https://test-api.basware.com/")
    assert explicit._make_client().base_url == "https://test-api.basware.com"


def test_default_scopes_cover_every_stream_and_request_status(tmp_path):
    scopes = set(DEFAULT_SCOPES.split())
    for api in ("vendors", "accounts", "costCenters", "paymentTerms", "matchingOrders",
                "matchingOrderLines"):
        assert f"{api}.write" in scopes
    assert "requestStatus.read" in scopes
    assert _target(tmp_path)._make_client().tokens.scopes == DEFAULT_SCOPES


def test_tls_verification_off_is_loud_and_still_works(run_target, basware):
    run = run_target("master_data.singer", verify_tls=False)

    assert run.returncode == 0, run.stderr
    assert "verify_tls is OFF" in run.stderr
    assert len(basware.posts()) == 6
