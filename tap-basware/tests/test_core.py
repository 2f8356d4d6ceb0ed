"""The Singer SDK's standard tap tests, run against the Basware simulator.

They run with `acknowledge` OFF: the standard sync must not drain the invoice queue (other
tests, and a demo on the same sandbox, expect the seeded invoices waiting). The sandbox is
reseeded first and two vendors are imported through the API, as target-basware would, so every
stream has records (`returns_record` runs for all three; nothing is excluded).

The SDK builds its parametrized stream tests when this module is imported, before any fixture
exists, so the class is generated with a placeholder base URL; the `runner` fixture below
points the runner at the session's simulator and syncs once per class.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from singer_sdk.testing.runners import TapTestRunner

from mlc_sandbox.data import BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET
from mlc_sandbox.serve import Sandbox
from tap_basware.tap import TapBasware

BASE_CONFIG = {
    "base_url": "http://127.0.0.1:9",  # placeholder, replaced by the simulator's URL below
    "client_id": BASWARE_CLIENT_ID,
    "client_secret": BASWARE_CLIENT_SECRET,
    "company_codes": ["US01", "CA01"],
    "acknowledge": False,  # never drain the queue from the standard tests
}
SUITE = SuiteConfig(max_records_limit=150)

_StandardTests = get_tap_test_class(TapBasware, config=BASE_CONFIG, suite_config=SUITE,
                                    parse_env_config=False)


def _seed_vendors(base_url: str) -> None:
    vendors = [{"externalCode": f"SAMINC-{n}", "vendorCode": n, "name": f"Vendor {n}",
                "companies": [{"companyCode": "US01"}]} for n in ("1200", "1210")]
    response = requests.post(f"{base_url}/v1/vendors", json=vendors, timeout=30,
                             auth=(BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET),
                             headers={"X-BW-REQUEST-ID": str(uuid.uuid4())})
    response.raise_for_status()


class TestTapBasware(_StandardTests):  # type: ignore[misc, valid-type]
    @pytest.fixture(scope="class")
    def runner(self, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TapTestRunner]:
        base_url = sandbox.basware.base_url
        admin = f"{base_url}/_sandbox"
        requests.delete(f"{admin}/faults", timeout=10).raise_for_status()
        requests.post(f"{admin}/reset", json={"seed": 0, "data": "demo"},
                      timeout=60).raise_for_status()
        _seed_vendors(base_url)
        ledger = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
        config = {**BASE_CONFIG, "base_url": base_url, "ledger_url": f"sqlite:///{ledger}"}
        runner = TapTestRunner(TapBasware, config=config, suite_config=SUITE,
                               parse_env_config=False)
        runner.sync_all()
        yield runner
        # The standard sync left the queue as it was.
        state = requests.get(f"{admin}/state", timeout=30).json()
        invoices = state["tenants"][BASWARE_CLIENT_ID]["invoices"]
        assert {inv["processingStatus"] for inv in invoices} == {"WaitingForTransfer"}
