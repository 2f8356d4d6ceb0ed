"""Hostile input, generated: every bad record is rejected alone, every good one arrives.

Hypothesis builds a run as a mix of good records (non-ASCII names, keys full of quotes,
slashes, `%`, `?`, `#`, `&`, `+`, parentheses, a key sent twice) and bad ones of every kind:
a missing field (externalCode included), a wrong type, a huge string, a control character,
NaN/Infinity, a negative or absurd amount, an impossible date, and references Basware does
not know (a payment term, a supplier, an order, a company), which Basware rejects
asynchronously in requestStatus. The run goes through the real target against the Basware
simulator over HTTP; the judges are the simulator's state, the ledger and the log:

- the run does not fail, and exits 0 through the CLI (tested in test_fixtures.py);
- each bad record has a `rejected` ledger entry and a log line naming the record (its key)
  and the field (or, for Basware's verdicts, what was unknown);
- each good record is in Basware exactly as sent (its latest version for a repeated key);
- the summary line counts received, written, rejected and superseded records exactly.

Keys are unique per example (a counter), so one sandbox reset serves the whole test.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from target_basware_testkit import tap_states

from ml_connector_core.ledger import Action, Ledger
from ml_connector_core.run_summary import parse_summary_line
from ml_connector_core.systems import basware_system
from target_basware.target import TargetBasware

ENDPOINTS = {"payment_terms": "paymentTerms", "accounts": "accounts",
             "cost_centers": "costCenters", "vendors": "vendors",
             "matching_orders": "matchingOrders", "matching_order_lines": "matchingOrderLines"}
# Each stream's SCHEMA as the meltano.yml stream maps announce it (orderDate a date-time).
SCHEMA_FORMATS = {"orderDate": {"format": "date-time"}}
# Characters with a meaning in URLs, OData or JSON, and non-ASCII: fine in a Basware key.
HOSTILE_KEY_CHARS = "'\"/\\%?#&+()=;,*$@! eqorüé東-_.:"
CONTROL_CHARACTERS = ["\x00", "\x1b", "\n", "\t", "\r", "\x7f"]
EXAMPLES = itertools.count(1)
ENTITY_TYPES = {"payment_terms": "PaymentTerm", "accounts": "Account",
                "cost_centers": "CostCenter", "vendors": "Vendor",
                "matching_orders": "MatchingOrder", "matching_order_lines": "MatchingOrderLine"}
ABBREVIATIONS = {"payment_terms": "PT", "accounts": "AC", "cost_centers": "CC", "vendors": "VE",
                 "matching_orders": "PO", "matching_order_lines": "PL"}


@dataclass
class Expected:
    """What one record must lead to."""

    stream: str
    record: Any  # a dict, except for a record that is not even an object
    # Bad records: the words the rejection must hold (the field, or what Basware did not know).
    rejected_because: str | None = None
    repeated: bool = False  # its key is sent twice in the run
    superseded: bool = False  # ...and this is the earlier of the two

    @property
    def code(self) -> Any:
        return self.record.get("externalCode") if isinstance(self.record, dict) else None

    @property
    def source_key(self) -> str:
        """Its key in the ledger: sourceKey, or how a record that is no object is named."""
        if not isinstance(self.record, dict):
            return f"(not an object) {json.dumps(self.record)}"
        return self.record["sourceKey"]


@dataclass
class Plan:
    prefix: str
    records: list[Expected] = field(default_factory=list)

    def good(self) -> list[Expected]:
        return [e for e in self.records if e.rejected_because is None and not e.superseded]

    def bad(self) -> list[Expected]:
        return [e for e in self.records if e.rejected_because is not None]


# -- records -----------------------------------------------------------------------------------

def _base(stream: str, prefix: str, n: int, **fields: Any) -> dict[str, Any]:
    """A valid record of `stream`; externalCode and sourceKey first, as the stream maps emit."""
    code = f"{prefix}-{ABBREVIATIONS[stream]}{n}"
    record: dict[str, Any] = {"externalCode": code, "sourceKey": f"{prefix}/{stream}/{n}"}
    record.update({
        "payment_terms": {"paymentTermCode": f"{prefix}T{n}", "name": "Net 30 days",
                          "companyCode": "US01", "active": True, "dueDays": 30},
        "accounts": {"accountCode": f"{prefix}-{n}", "name": "Office supplies",
                     "companyCode": "US01", "active": True},
        "cost_centers": {"costCenterCode": f"{prefix}C{n}", "name": "Warehouse East",
                         "companyCode": "US01", "active": True},
        "vendors": {"vendorCode": f"{prefix}V{n}", "name": "Fixture Supplies Inc.",
                    "companyCode": "US01", "active": True},
        "matching_orders": {"orderNumber": f"{prefix}PO{n}", "companyCode": "US01",
                            "currencyCode": "USD", "orderDate": "2026-02-03T00:00:00Z"},
        "matching_order_lines": {"lineNumber": 1000, "quantity": 12, "netPrice": 2.5,
                                 "netSum": 30},
    }[stream])
    record.update(fields)
    return record


# Bad values per stream: (field, value, the words the rejection names).
WRONG_VALUES: dict[str, list[tuple[str, Any, str]]] = {
    "payment_terms": [("dueDays", "30", "field 'dueDays'"), ("dueDays", -1, "field 'dueDays'"),
                      ("cashDiscountPercent", 250, "field 'cashDiscountPercent'"),
                      ("active", "yes", "field 'active'")],
    "accounts": [("name", "x", "field 'name'"), ("active", None, "field 'active'"),
                 ("companyCode", ["US01"], "field 'companyCode'")],
    "cost_centers": [("costCenterCode", 100, "field 'costCenterCode'"),
                     ("name", "", "field 'name'")],
    "vendors": [("name", 123, "field 'name'"), ("countryCode", "USA", "field 'countryCode'"),
                ("paymentDenied", "no", "field 'paymentDenied'"),
                ("email", "not an e-mail", "field 'email'"),
                ("name", float("nan"), "field 'name'")],
    "matching_orders": [("currencyCode", "usd", "field 'currencyCode'"),
                        ("orderDate", "2026-02-30", "field 'orderDate'"),
                        ("orderDate", 20260203, "field 'orderDate'"),
                        ("isClosed", "false", "field 'isClosed'")],
    "matching_order_lines": [("quantity", "ten", "field 'quantity'"),
                             ("quantity", -1, "field 'quantity'"),
                             ("netSum", 1e20, "field 'netSum'"),
                             ("netPrice", float("inf"), "field 'netPrice'"),
                             ("quantity", float("nan"), "field 'quantity'"),
                             ("lineNumber", 1.5, "field 'lineNumber'")],
}
REQUIRED = {"payment_terms": ["externalCode", "paymentTermCode", "name", "companyCode",
                              "active"],
            "accounts": ["externalCode", "accountCode", "name", "companyCode", "active"],
            "cost_centers": ["externalCode", "costCenterCode", "name", "companyCode", "active"],
            "vendors": ["externalCode", "vendorCode", "name", "companyCode", "active"],
            "matching_orders": ["externalCode", "orderNumber", "companyCode", "supplierCode",
                                "currencyCode"],
            "matching_order_lines": ["externalCode", "orderExternalCode", "lineNumber",
                                     "quantity"]}
TEXT_FIELDS = {"payment_terms": "name", "accounts": "name", "cost_centers": "name",
               "vendors": "name", "matching_orders": "description",
               "matching_order_lines": "productName"}

Case = Callable[[Plan, int], list[Expected]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """One good or bad record (or two, for a repeated key), as a function of the run."""
    kind = draw(st.sampled_from([
        "good_hostile_key", "good_non_ascii", "repeated_key", "missing", "wrong", "huge",
        "control", "unknown_term", "unknown_company", "unknown_supplier", "unknown_order",
        "not_an_object"]))
    stream = draw(st.sampled_from(list(ENDPOINTS)))

    def make(plan: Plan, n: int) -> list[Expected]:
        anchors = _anchors(plan)
        record = _base(stream, plan.prefix, n, **_links(stream, anchors))
        if kind == "good_hostile_key":
            # Ends in a letter: surrounding blanks are trimmed like every Sage value.
            record["externalCode"] = f"{plan.prefix}-{n}-{hostile}"[:35] + "x"
            return [Expected(stream, record)]
        if kind == "good_non_ascii":
            record[TEXT_FIELDS[stream]] = text
            return [Expected(stream, record)]
        if kind == "repeated_key":
            later = {**record, TEXT_FIELDS[stream]: "second version"}
            return [Expected(stream, record, repeated=True),
                    Expected(stream, later, repeated=True)]
        if kind == "not_an_object":  # a RECORD whose record is a list, a string, a number...
            return [Expected(stream, [[n, "x"], f"record {n}", n, None][missing % 4],
                             "field '(record)': must be an object")]
        if kind == "missing":
            name = REQUIRED[stream][missing % len(REQUIRED[stream])]
            del record[name]
            return [Expected(stream, record, f"field '{name}'")]
        if kind == "wrong":
            name, value, words = WRONG_VALUES[stream][wrong % len(WRONG_VALUES[stream])]
            record[name] = value
            return [Expected(stream, record, words)]
        if kind == "huge":
            name = "externalCode" if huge_key else TEXT_FIELDS[stream]
            record[name] = "Ü" * 100_000
            return [Expected(stream, record, f"field '{name}'")]
        if kind == "control":
            name = "externalCode" if control_key else TEXT_FIELDS[stream]
            record[name] = f"{record.get(name) or 'text'}{control}end"
            return [Expected(stream, record, f"field '{name}': may not hold control")]
        # References Basware does not know: its asynchronous verdict, per record.
        vendor = _base("vendors", plan.prefix, n)
        if kind == "unknown_term":
            vendor["paymentTermCode"] = "NOSUCH"
            return [Expected("vendors", vendor, "Payment term NOSUCH does not exist")]
        if kind == "unknown_company":
            vendor["companyCode"] = "ZZ01"
            return [Expected("vendors", vendor, "wrong or missing CompanyCode 'ZZ01'")]
        if kind == "unknown_supplier":
            order = _base("matching_orders", plan.prefix, n, supplierCode="NOSUCH")
            return [Expected("matching_orders", order, "Supplier NOSUCH does not exist")]
        line = _base("matching_order_lines", plan.prefix, n, orderExternalCode="NOSUCH-PO")
        return [Expected("matching_order_lines", line,
                         "Matching order with externalCode NOSUCH-PO does not exist")]

    hostile = draw(st.text(alphabet=HOSTILE_KEY_CHARS, min_size=1, max_size=12))
    text = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
                        min_size=2, max_size=40).filter(lambda t: t.strip() == t and t))
    missing = draw(st.integers(0, 4))
    wrong = draw(st.integers(0, 5))
    huge_key = draw(st.booleans())
    control_key = draw(st.booleans())
    control = draw(st.sampled_from(CONTROL_CHARACTERS))
    return make


def _anchors(plan: Plan) -> dict[str, str]:
    return {"term": f"{plan.prefix}T0", "vendor": f"{plan.prefix}V0",
            "order": f"{plan.prefix}-PO0"}


def _links(stream: str, anchors: dict[str, str]) -> dict[str, Any]:
    """What a good record refers to: the good chain every run starts with."""
    return {"vendors": {"paymentTermCode": anchors["term"]},
            "matching_orders": {"supplierCode": anchors["vendor"],
                                "paymentTermCode": anchors["term"]},
            "matching_order_lines": {"orderExternalCode": anchors["order"]}}.get(stream, {})


@st.composite
def runs(draw: st.DrawFn) -> Plan:
    plan = Plan(prefix=f"H{next(EXAMPLES):03d}")
    # The good chain: a term, a vendor using it, an order of that vendor, a line of the order.
    for stream in ("payment_terms", "vendors", "matching_orders", "matching_order_lines"):
        anchors = _anchors(plan)
        plan.records.append(Expected(stream, _base(stream, plan.prefix, 0,
                                                   **_links(stream, anchors))))
    for n, make in enumerate(draw(st.lists(cases(), min_size=1, max_size=8)), start=1):
        plan.records += make(plan, n)
    # Shuffled: dependents may come before what they depend on; the target orders them.
    shuffled = Plan(plan.prefix, draw(st.permutations(plan.records)))
    # Of a key sent twice, whichever comes first is the one superseded.
    seen: set[tuple[str, Any]] = set()
    for expected in shuffled.records:
        if expected.repeated:
            expected.superseded = (expected.stream, expected.code) not in seen
            seen.add((expected.stream, expected.code))
    return shuffled


# -- running the target ------------------------------------------------------------------------

def singer_messages(plan: Plan) -> str:
    lines = []
    for stream in {e.stream: None for e in plan.records}:
        properties = {name: {"type": ["string", "number", "integer", "boolean", "null"],
                             **SCHEMA_FORMATS.get(name, {})}
                      for e in plan.records if e.stream == stream and isinstance(e.record, dict)
                      for name in e.record}
        lines.append({"type": "SCHEMA", "stream": stream, "key_properties": ["externalCode"],
                      "schema": {"type": "object", "properties": properties}})
    lines += [{"type": "RECORD", "stream": e.stream, "record": e.record} for e in plan.records]
    lines.append({"type": "STATE", "value": {"bookmarks": {"example": plan.prefix}}})
    return "".join(json.dumps(line) + "\n" for line in lines)  # NaN/Infinity as Python writes


@contextlib.contextmanager
def captured_log() -> Iterator[io.StringIO]:
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield text
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def run_in_process(config: dict[str, Any], singer: str) -> tuple[list[Any], str]:
    """The SDK's own read loop on `singer`; (STATE values written, log text)."""
    stdout = io.StringIO()
    with captured_log() as log, contextlib.redirect_stdout(stdout):
        target = TargetBasware(config=config)
        target.listen(io.StringIO(singer))
    # A target writes each confirmed STATE value as one JSON line.
    states = tap_states([json.loads(line) for line in stdout.getvalue().splitlines()
                         if line.strip()], basware_system(config))
    return states, log.getvalue()


# -- the property ------------------------------------------------------------------------------

@pytest.fixture
def quick_basware(basware: Any) -> Any:
    """Basware processes each import at once (its asynchronous verdicts are unchanged)."""
    basware.settings({"processing_delay": 0})
    return basware


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=runs())
def test_bad_records_are_rejected_alone_and_good_ones_arrive(
        plan: Plan, quick_basware: Any, target_config: dict[str, Any], ledger_url: str) -> None:
    states, log = run_in_process(target_config, singer_messages(plan))

    # The STATE after the records came out: nothing stopped the run.
    assert states and states[-1] == {"bookmarks": {"example": plan.prefix}}

    # Every good record is in Basware as sent (the later version of a repeated key).
    tenant = quick_basware.tenant()
    stored = {stream: {r["externalCode"]: r for r in tenant["master_data"].get(endpoint, [])}
              for stream, endpoint in ENDPOINTS.items()}
    statuses = {(entry["entityType"], item["externalCode"]): item["status"]
                for entry in tenant["request_status"] for system in entry["systems"]
                for item in system["items"]}
    for expected in plan.good():
        stream, code = expected.stream, expected.code
        assert code in stored[stream], (stream, code)
        for name in ("name", "description", "productName"):
            if name in expected.record and name in stored[stream][code]:
                assert stored[stream][code][name] == expected.record[name], (stream, code)
        assert statuses[(ENTITY_TYPES[stream], code)] == "Success", (stream, code)

    with Ledger.open(ledger_url) as ledger:
        for expected in plan.bad():
            # No record that broke its contract reached Basware under its key.
            if expected.rejected_because.startswith("field"):
                assert expected.code not in stored[expected.stream], expected
            entry = ledger.latest_outcome(expected.stream, expected.source_key)
            assert entry is not None and entry.action == Action.REJECTED, expected
            assert expected.rejected_because in str(entry.error), (entry.error, expected)
            assert _log_line_names(log, expected), (expected, log[-3000:])
        summary = parse_summary_line(log)
        assert summary is not None, log[-2000:]
        report = ledger.report(str(summary["run_id"])).counts

    assert re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", log) is None  # escaped, never raw
    superseded = sum(e.superseded for e in plan.records)
    assert summary == {
        "plugin": "target-basware", "status": "success", "run_id": summary["run_id"],
        "received": len(plan.records), "written": len(plan.good()), "unchanged": 0,
        "rejected": len(plan.bad()), "failed": 0,
        **({"superseded": superseded} if superseded else {})}
    assert sum(c.get(Action.REJECTED.value, 0) for c in report.values()) == len(plan.bad())


def _log_line_names(log: str, expected: Expected) -> bool:
    """A log line `<stream> record <key> rejected: <why>` names this record and its field."""
    code = expected.code
    if isinstance(code, str) and code.strip():
        # A key too long or with control characters is shown escaped and shortened.
        names = json.dumps(code)[1:-1][:20] if re.search(r"[\x00-\x1f\x7f]", code) else code[:20]
    else:  # no key: named by its first values (sourceKey first), or by the value itself
        names = expected.source_key if isinstance(expected.record, dict) else "(not an object)"
    return any(line.startswith(f"{expected.stream} record ") and names in line
               and " rejected: " in line and expected.rejected_because in line
               for line in log.splitlines())


def test_huge_and_control_character_keys_fit_a_postgresql_ledger(
        quick_basware: Any, target_config: dict[str, Any], pg_url: str) -> None:
    """A rejected record's key is stored escaped and shortened: a 100,000-character key would
    not fit PostgreSQL's key columns and would stop the run (DataError)."""
    plan = Plan("PG1", [
        Expected("vendors", _base("vendors", "PG1", 0)),
        Expected("vendors", {**_base("vendors", "PG1", 1), "externalCode": "Ü" * 100_000},
                 "field 'externalCode'"),
        Expected("vendors", {**_base("vendors", "PG1", 2), "sourceKey": "k\x1b" * 1000},
                 "field 'sourceKey'"),
    ])
    states, log = run_in_process({**target_config, "ledger_url": pg_url},
                                 singer_messages(plan))

    assert states == [{"bookmarks": {"example": "PG1"}}]
    assert "PG1-VE0" in quick_basware.records("vendors")
    with Ledger.open(pg_url) as ledger:
        counts = ledger.report(str(parse_summary_line(log)["run_id"])).counts
    assert counts == {"vendors": {"created": 1, "rejected": 2}}
