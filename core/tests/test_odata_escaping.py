"""No value put into an OData query can change the query: tested against the Sage 300 simulator.

Every value the connector puts into a `$filter` goes through `odata_literal`, and every key in
a URL path through `entity_key` (core sage300_api). Hypothesis builds values out of what could
break out of a literal or a URL: quotes (single, doubled, half-doubled), slashes, `%` and
percent-escapes, `&`, `#`, `?`, `+`, `=`, parentheses, the keywords `eq`/`or`/`and`/`not`,
blanks and non-ASCII. For each value the test creates vendors whose name (or number) is
exactly that value, plus decoys that differ by one character, then asks Sage over HTTP. The
query must find exactly the records holding the value: never an error, never one more.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_core.sage300_api import Sage300Client, odata_literal
from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox

FRAGMENTS = ["'", "''", "'''", '"', "/", "\\", "%", "%27", "%2527", "&", "#", "?", "+", "=",
             "(", ")", ",", ";", "$", "*", "@", " ", " eq ", " or ", " and ", "not ",
             "' or 1 eq 1 or '", "') or true or ('", "$filter=", "&$top=1", "é", "東", "ß",
             "\u00a0", "a", "Z", "0"]
hostile = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join)
EXAMPLES = itertools.count(1)
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def sage(fresh_sandbox: Sandbox) -> Sage300Client:
    return Sage300Client(base_url=fresh_sandbox.info()["sage300"]["base_url"],
                         company="SAMINC", username=SAGE_USER, password=SAGE_PASSWORD)


def _numbers(sage: Sage300Client, query: str) -> set[str]:
    return {v["VendorNumber"] for v in sage.iter_records(
        "AP/APVendors", filter=query, select=["VendorNumber"])}


@SETTINGS
@given(value=hostile)
def test_a_filter_value_finds_exactly_the_records_holding_it(sage: Sage300Client,
                                                              value: str) -> None:
    n = next(EXAMPLES)
    name = f"{n}:{value}"[:60]  # unique per example; Sage keeps 60 characters of a name
    holders = {f"ODN{n:05d}A", f"ODN{n:05d}B"}
    # Names one character off, and the value with its quotes doubled or dropped.
    decoys = {number: decoy[:60] for number, decoy in {
        f"ODN{n:05d}C": name + "x", f"ODN{n:05d}D": name[:-1] + "'",
        f"ODN{n:05d}E": name.replace("'", "''"), f"ODN{n:05d}F": name.replace("'", ""),
    }.items() if decoy[:60] != name}
    for number in holders:
        sage.create("AP/APVendors", {"VendorNumber": number, "VendorName": name})
    for number, decoy in decoys.items():
        sage.create("AP/APVendors", {"VendorNumber": number, "VendorName": decoy})

    assert _numbers(sage, f"VendorName eq {odata_literal(name)}") == holders
    starts = {number for number, decoy in decoys.items() if decoy.startswith(name)}
    assert _numbers(sage, f"startswith(VendorName,{odata_literal(name)})") == holders | starts
    # Combined with another condition, the value still cannot widen the query.
    assert _numbers(sage, f"VendorName eq {odata_literal(name)} and "
                          f"VendorNumber eq {odata_literal(min(holders))}") == {min(holders)}


@SETTINGS
@given(value=hostile)
def test_a_key_with_any_character_finds_its_own_record(sage: Sage300Client, value: str) -> None:
    # Sage keeps codes in capitals (the view uppercases keys); 12 characters at most.
    number = f"K{next(EXAMPLES)}{value}".upper()[:12]
    sage.create("AP/APVendors", {"VendorNumber": number, "VendorName": "Key test"})
    sage.create("AP/APVendors", {"VendorNumber": (number[:-1] + "X")
                                 if not number.endswith("X") else number[:-1] + "Y",
                                 "VendorName": "Key decoy"})

    assert _numbers(sage, f"VendorNumber eq {odata_literal(number)}") == {number}
    found = sage.get_entity("AP/APVendors", number)  # the key in the URL path (entity_key)
    assert found is not None and found["VendorNumber"] == number
