"""The SDK's standard tap tests, against the Sage 300 simulator over HTTP.

Every standard test runs; none is excluded. The suite syncs in-process with a record limit of
150 per stream (so purchase_orders stops inside the first company; the per-company checks are
in test_extract.py). The simulator is the session sandbox, reseeded and given one AP invoice
batch per company first, so every stream has records.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from tap_sage300.tap import TapSage300

# Filled in by the fixture below once the session sandbox has its port; the runner the SDK
# builds at import time keeps a reference to this very dict.
CONFIG: dict[str, Any] = {
    "base_url": "http://127.0.0.1:9/Sage300WebApi/v1.0/-",  # replaced before any sync
    "company_ids": ["SAMINC", "SAMLTD"],
    "username": SAGE_USER,
    "password": SAGE_PASSWORD,
    "ledger_url": "off",  # the SDK's standard tests are about the Singer output
}

_StandardTests = get_tap_test_class(
    TapSage300, config=CONFIG, suite_config=SuiteConfig(max_records_limit=150),
    parse_env_config=False,
)


class TestTapSage300Standard(_StandardTests):  # type: ignore[misc,valid-type]
    @pytest.fixture(scope="class", autouse=True)
    def _point_at_sandbox(self, sandbox: Any) -> None:
        from ml_connector_core.sage300_api import Sage300Client

        admin = f"{sandbox.sage300.base_url}/_sandbox"
        requests.delete(f"{admin}/faults", timeout=10).raise_for_status()
        requests.post(f"{admin}/reset", json={"seed": 0, "data": "demo"},
                      timeout=60).raise_for_status()
        CONFIG["base_url"] = f"{sandbox.sage300.base_url}/Sage300WebApi/v1.0/-"
        for company, vendor, account in (("SAMINC", "1200", "6100100"),
                                         ("SAMLTD", "1210", "6200200")):
            client = Sage300Client(base_url=CONFIG["base_url"], company=company,
                                   username=SAGE_USER, password=SAGE_PASSWORD)
            client.create("AP/APInvoiceBatches", {
                "BatchDate": "2026-10-01", "Description": "standard tests",
                "Invoices": [{"VendorNumber": vendor, "DocumentNumber": f"STD-{company}",
                              "DocumentType": "Invoice", "DocumentDate": "2026-10-01",
                              "InvoiceDetails": [{"GLAccount": account,
                                                  "DistributedAmount": 100}]}]})
