"""How `Sage300Client.iter_records` pages a read and checks it complete (core `FeedPaging`),
against the Sage 300 simulator over HTTP: with and without `@odata.nextLink`, with and without
`@odata.count`, and with records deleted or added while the read is under way.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from ml_connector_core.sage300_api import IncompleteRead, Sage300Client, entity_key
from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox

VENDORS = "AP/APVendors"


class Sage:
    """The simulator's admin API and a client of company SAMINC."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.root = sandbox.sage300.base_url
        self.base_url = sandbox.info()["sage300"]["base_url"]
        self.client = Sage300Client(base_url=self.base_url, company="SAMINC",
                                    username=SAGE_USER, password=SAGE_PASSWORD)

    def admin(self, method: str, action: str, body: Any = None) -> Any:
        response = requests.request(method, f"{self.root}/_sandbox/{action}", json=body,
                                    timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def settings(self, **changes: Any) -> None:
        self.admin("PATCH", "settings", changes)

    def reads(self) -> list[dict[str, list[str]]]:
        """The query options of every GET of SAMINC's vendors, and then forget them."""
        found = [parse_qs(r["query"]) for r in self.admin("GET", "requests")["requests"]
                 if r["method"] == "GET" and r["path"].endswith("SAMINC/" + VENDORS)]
        self.admin("DELETE", "requests")
        return found

    def vendor_numbers(self) -> list[str]:
        tables = self.admin("GET", "state")["companies"]["SAMINC"]
        return [v["VendorNumber"] for v in tables[VENDORS]]

    def delete_vendor(self, number: str) -> None:
        """As a Sage user would, over the Web API (the legacy install wants it uppercased)."""
        response = requests.delete(f"{self.base_url}/SAMINC/{VENDORS}{entity_key(number)}",
                                   auth=(SAGE_USER, SAGE_PASSWORD.upper()), timeout=10)
        assert response.status_code == 204, response.text


@pytest.fixture
def sage(fresh_sandbox: Sandbox) -> Sage:
    return Sage(fresh_sandbox)


def numbers(records: Any) -> list[str]:
    return [r["VendorNumber"] for r in records]


def test_the_same_records_come_with_and_without_next_links(sage: Sage) -> None:
    sage.admin("POST", "reset", {"seed": 0, "data": "1000"})  # 1,032 vendors in SAMINC
    expected = sage.vendor_numbers()
    assert len(expected) == 1032

    linked = numbers(sage.client.iter_records(VENDORS, select=["VendorNumber"]))
    linked_reads = sage.reads()
    sage.settings(next_link=False)  # Sage's PageSize 100 cuts every page, with no link
    unlinked = numbers(sage.client.iter_records(VENDORS, select=["VendorNumber"]))
    unlinked_reads = sage.reads()

    assert linked == unlinked == expected
    # Eleven pages of at most 100 either way: the count says when the read is done, so
    # neither asks for an empty page, and only the first request asks for the count.
    assert len(linked_reads) == len(unlinked_reads) == 11
    for reads in (linked_reads, unlinked_reads):
        assert [q.get("$count") for q in reads] == [["true"]] + [None] * 10
        assert [q.get("$skip", ["0"])[0] for q in reads] == [str(100 * i) for i in range(11)]


@pytest.mark.parametrize("next_link", [True, False])
def test_a_record_deleted_during_the_read_fails_it_naming_the_counts(sage: Sage,
                                                                      next_link: bool) -> None:
    sage.settings(page_size=10, next_link=next_link)
    first = sage.vendor_numbers()[0]
    records = sage.client.iter_records(VENDORS, select=["VendorNumber"])
    assert next(records)["VendorNumber"] == first  # the first page is in
    sage.delete_vendor(first)  # every later record moves back one: one is never seen

    with pytest.raises(IncompleteRead) as failure:
        list(records)

    message = str(failure.value)
    assert "Reading AP/APVendors of company SAMINC" in message
    assert "Sage counted 32 records (@odata.count) but 31 came back" in message
    assert "run again" in message and "PageSize" in message
    assert SAGE_PASSWORD not in message and SAGE_PASSWORD.upper() not in message
    assert failure.value.code == "IncompleteRead"


def test_a_record_added_during_the_read_is_only_a_warning(
        sage: Sage, caplog: pytest.LogCaptureFixture) -> None:
    sage.settings(page_size=10, next_link=False)
    records = sage.client.iter_records(VENDORS, select=["VendorNumber"])
    first = next(records)["VendorNumber"]
    # Sorted before every other vendor: the rest move on one, and one of them comes twice.
    sage.client.create(VENDORS, {"VendorNumber": "0001", "VendorName": "Inserted Mid-Read"})

    with caplog.at_level(logging.WARNING, logger="ml_connector_core.sage300_api"):
        rest = numbers(records)

    assert len([first, *rest]) == 33 and len({first, *rest}) == 32  # one twice, none lost
    assert "0001" not in rest
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "AP/APVendors of company SAMINC: 33 records came back, 32 were counted" in warning


def test_a_server_ignoring_count_is_read_to_an_empty_page(sage: Sage) -> None:
    sage.settings(page_size=10, next_link=False, odata_count=False)

    got = numbers(sage.client.iter_records(VENDORS, select=["VendorNumber"]))

    assert got == sage.vendor_numbers()
    # With no total to reach, only an empty page ends the read: one request more.
    assert [q.get("$skip", ["0"])[0] for q in sage.reads()] == ["0", "10", "20", "30", "32"]


def test_top_caps_the_read_and_a_capped_page_is_continued(sage: Sage) -> None:
    sage.settings(page_size=1, next_link=False)  # the server sends 1 record where 2 are asked

    got = numbers(sage.client.iter_records(VENDORS, select=["VendorNumber"], top=2))

    assert got == sage.vendor_numbers()[:2]
    reads = sage.reads()
    assert [(q["$top"], q.get("$skip")) for q in reads] == [(["2"], None), (["1"], ["1"])]
