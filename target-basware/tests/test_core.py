"""The standard Singer SDK target tests that apply to target-basware (a trimmed suite).

The SDK's canned `.singer` files use stream names like `test_camelcase`. target-basware refuses
streams outside its six contracts (a stream nobody maps must not vanish silently), so the
suite's config maps every test stream onto `vendors` with a stream map, as a user's meltano.yml
would. Their records do not fit the vendor contract, so these tests check that arbitrary Singer
input (arrays, camelCase, unicode, schema and key changes, duplicates...) is rejected record by
record into the ledger and never crashes the target. No record is valid, so nothing is posted
and no Basware is needed; what reaches Basware is tested in test_fixtures.py.

Excluded, with the reason:
- TargetRecordMissingKeyProperty expects MissingKeyPropertiesError to stop the whole run. Here
  a record without externalCode breaks its contract and is rejected alone (ledger + log), as
  in target-sage300; the good records of the run still arrive (test_bad_input_properties.py).
- TargetMultipleStateMessages: it expects the SDK's relaying cadence (one STATE per drain, so
  three of five). target-basware writes each STATE as soon as the records before it are
  confirmed; that is tested in test_resilience.py (checkpoints, crash and resume).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetArrayData,
    TargetCamelcaseComplexSchema,
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetEncodedStringData,
    TargetInvalidSchemaTest,
    TargetNoPrimaryKeys,
    TargetOptionalAttributes,
    TargetPrimaryKeyUpdates,
    TargetRecordBeforeSchemaTest,
    TargetRecordMissingOptionalFields,
    TargetRecordMissingRequiredProperty,
    TargetSchemaNoProperties,
    TargetSchemaUpdates,
    TargetSpecialCharsInAttributes,
)

from target_basware.target import TargetBasware

STANDARD_TESTS = SingerTestSuite(kind="target", tests=[
    TargetArrayData,
    TargetCamelcaseComplexSchema,
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetEncodedStringData,
    TargetInvalidSchemaTest,  # a SCHEMA without properties stops the run
    TargetNoPrimaryKeys,
    TargetOptionalAttributes,
    TargetPrimaryKeyUpdates,
    TargetRecordBeforeSchemaTest,  # a RECORD before its SCHEMA stops the run
    TargetRecordMissingOptionalFields,
    TargetRecordMissingRequiredProperty,
    TargetSchemaNoProperties,
    TargetSchemaUpdates,
    TargetSpecialCharsInAttributes,
])

LEDGER = Path(tempfile.mkdtemp(prefix="target-basware-standard-")) / "ledger.sqlite"

CONFIG: dict[str, Any] = {
    "client_id": "standard-tests",
    "client_secret": "standard-tests-secret",
    # Never called: no canned record passes the vendor contract (a test asserts it below).
    "base_url": "http://127.0.0.1:9",
    "ledger_url": f"sqlite:///{LEDGER}",
    "stream_maps": {"*": {"__alias__": "vendors"}},
}

_StandardTests = get_target_test_class(TargetBasware, config=CONFIG,
                                       include_target_tests=False,
                                       custom_suites=[STANDARD_TESTS])


class TestTargetBasware(_StandardTests):  # type: ignore[misc, valid-type]
    @pytest.fixture(scope="class")
    def resource(self) -> Any:
        LEDGER.unlink(missing_ok=True)
        yield None
        LEDGER.unlink(missing_ok=True)


def test_canned_records_were_rejected_not_posted(tmp_path: Path) -> None:
    """What the suite above relies on: a canned record ends in the ledger as rejected."""
    from singer_sdk.testing import target_sync_test
    from singer_sdk.testing.target_test_streams import __file__ as streams_init

    from ml_connector_core.ledger import Action, Ledger

    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    target = TargetBasware(config={**CONFIG, "ledger_url": ledger_url})
    camelcase = Path(streams_init).parent / "camelcase.singer"
    with camelcase.open() as handle:
        target_sync_test(target, input=handle, finalize=True)
    with Ledger.open(ledger_url) as ledger:
        report = ledger.report()
    assert report.counts == {"vendors": {Action.REJECTED.value: 2}}
