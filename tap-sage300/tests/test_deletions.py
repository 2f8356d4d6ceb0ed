"""What tap-sage300 tells a target about records deleted in Sage, in standard Singer.

- The streams read whole every run (gl_accounts, cost_centers, payment_terms) end with
  ACTIVATE_VERSION once every company is read completely; purchase_order_lines never does
  (FULL_TABLE in the catalog, but it follows its POs' bookmark).
- purchase_orders lists the keys of the lines each PO has now (line_keys).
- vendor_keys lists every vendor number, with ACTIVATE_VERSION, when the vendor counts say one
  may have been deleted since the last run (tap_sage300.deletions); otherwise it costs one
  keys-only request per company.

All over HTTP against the simulator, the tap run as Meltano runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tap_sage300_testkit import SageSandbox, TapRun

COMPANIES = ("SAMINC", "SAMLTD")
WHOLE = ("gl_accounts", "cost_centers", "payment_terms", "tax_codes")
KEYS_ONLY = {"$select": ["VendorNumber"], "$top": ["1000"], "$count": ["true"]}


def activations(run: TapRun) -> list[tuple[str, int]]:
    return [(m["stream"], m["version"]) for m in run.messages if m["type"] == "ACTIVATE_VERSION"]


def keys_only_reads(sage: SageSandbox, company: str) -> list[dict[str, list[str]]]:
    return [q for q in sage.reads(f"{company}/AP/APVendors")
            if q.get("$select") == ["VendorNumber"]]


def vendor_numbers(run: TapRun, company: str) -> list[str]:
    return sorted(r["VendorNumber"] for r in run.of("vendor_keys", company))


def test_streams_read_whole_end_with_activate_version_and_po_lines_never(
        sage: SageSandbox) -> None:
    run = sage.run()
    assert run.returncode == 0, run.stderr

    versions = dict(activations(run))
    assert set(versions) == {*WHOLE, "vendor_keys"}  # the first run lists every vendor
    assert len(set(versions.values())) == 1
    for stream in WHOLE:
        # After every record of the stream, both companies; each record carries the version.
        positions = [i for i, m in enumerate(run.messages)
                     if m.get("stream") == stream and m["type"] in ("RECORD",
                                                                    "ACTIVATE_VERSION")]
        last = run.messages[positions[-1]]
        assert last["type"] == "ACTIVATE_VERSION", stream
        records = [run.messages[i] for i in positions[:-1]]
        assert {r["record"]["company_id"] for r in records} == set(COMPANIES)
        assert {r.get("version") for r in records} == {versions[stream]}
    # Incremental streams and the lines (which follow their POs) carry no version.
    for stream in ("vendors", "purchase_orders", "purchase_order_lines"):
        assert all("version" not in m for m in run.messages
                   if m["type"] == "RECORD" and m["stream"] == stream), stream


def test_a_read_that_does_not_end_sends_no_activate_version(sage: SageSandbox) -> None:
    # The second company does not exist: its read fails after SAMINC's accounts went out.
    run = sage.run(sage.config(company_ids=["SAMINC", "NOSUCH"], metadata_check="off"))

    assert run.returncode != 0
    assert run.of("gl_accounts", "SAMINC")
    assert activations(run) == []


def test_purchase_orders_list_the_keys_of_their_lines(sage: SageSandbox) -> None:
    first = sage.run()
    assert first.returncode == 0, first.stderr
    for order in first.of("purchase_orders"):
        lines = [r for r in first.of("purchase_order_lines", order["company_id"])
                 if r["PurchaseOrderSequenceKey"] == order["PurchaseOrderSequenceKey"]]
        assert order["line_keys"] == [f"{r['company_id']}/{r['PurchaseOrderSequenceKey']}/"
                                      f"{r['LineNumber']}" for r in lines]

    # A Sage user removes line 4000 from PO 10001: the PO is maintained, so read again.
    po = next(p for p in sage.table("SAMINC", "PO/POPurchaseOrders")
              if p["PurchaseOrderSequenceKey"] == 10001)
    kept = [line for line in po["PurchaseOrderLines"] if line["LineNumber"] != 4000]
    sage.touch("SAMINC", "PO/POPurchaseOrders", 10001, PurchaseOrderLines=kept)
    second = sage.run(state=first.final_state)

    assert second.returncode == 0, second.stderr
    (order,) = [p for p in second.of("purchase_orders", "SAMINC")
                if p["PurchaseOrderSequenceKey"] == 10001]
    assert order["line_keys"] == [f"SAMINC/10001/{line['LineNumber']}" for line in kept]
    assert "SAMINC/10001/4000" not in order["line_keys"]
    assert [r["LineNumber"] for r in second.of("purchase_order_lines", "SAMINC")
            if r["PurchaseOrderSequenceKey"] == 10001] == [line["LineNumber"] for line in kept]


def test_vendor_keys_are_sent_only_when_a_vendor_may_be_gone(sage: SageSandbox,
                                                             tmp_path: Path) -> None:
    config = sage.config(ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    sage.clear_requests()
    first = sage.run(config)
    assert first.returncode == 0, first.stderr
    # The first run read every vendor: their numbers are the list, no keys-only request.
    for company in COMPANIES:
        assert vendor_numbers(first, company) == sorted(
            v["VendorNumber"] for v in sage.table(company, "AP/APVendors"))
        assert keys_only_reads(sage, company) == []
    assert "vendor_keys" in dict(activations(first))
    counts = first.final_state["vendor_counts"]
    assert {c: counts[c]["count"] for c in COMPANIES} == {
        c: len(sage.table(c, "AP/APVendors")) for c in COMPANIES}

    def run(state: dict[str, Any]) -> TapRun:
        sage.clear_requests()
        done = sage.run(config, state=state)
        assert done.returncode == 0, done.stderr
        return done

    # Nothing changed: one keys-only request per company, nothing listed.
    unchanged = run(first.final_state)
    for company in COMPANIES:
        assert keys_only_reads(sage, company) == [KEYS_ONLY]
    assert unchanged.of("vendor_keys") == []
    assert "vendor_keys" not in dict(activations(unchanged))

    # A vendor created in Sage is read by `vendors`: counted as new, so still nothing listed.
    sage.post("SAMINC", "AP/APVendors", {"VendorNumber": "9990", "VendorName": "New Vendor"})
    created = run(unchanged.final_state)
    assert [v["VendorNumber"] for v in created.of("vendors", "SAMINC")
            if v["VendorNumber"] == "9990"] == ["9990"]
    assert created.of("vendor_keys") == []
    assert created.final_state["vendor_counts"]["SAMINC"]["count"] == \
        len(sage.table("SAMINC", "AP/APVendors"))

    # A vendor deleted: every company's list goes, from the pages already read.
    sage.delete("SAMINC", "AP/APVendors", "1270")
    deleted = run(created.final_state)
    for company in COMPANIES:
        assert keys_only_reads(sage, company) == [KEYS_ONLY]
        assert vendor_numbers(deleted, company) == sorted(
            v["VendorNumber"] for v in sage.table(company, "AP/APVendors"))
    assert "1270" not in vendor_numbers(deleted, "SAMINC")
    assert "vendor_keys" in dict(activations(deleted))
    # The counts come after the list, in the STATE that follows its ACTIVATE_VERSION.
    types = [m["type"] for m in deleted.messages if m.get("stream") == "vendor_keys"
             or m["type"] == "STATE" and "vendor_counts" in m["value"]]
    assert types.index("ACTIVATE_VERSION") < len(types) - 1 - types[::-1].index("STATE")

    # Once the STATE with those counts is back, nothing more is listed.
    after = run(deleted.final_state)
    assert after.of("vendor_keys") == []

    # A STATE whose mark this ledger does not hold (another ledger, a restore) lists again.
    other = sage.config(ledger_url=f"sqlite:///{tmp_path / 'other.sqlite'}")
    sage.clear_requests()
    elsewhere = sage.run(other, state=after.final_state)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert vendor_numbers(elsewhere, "SAMLTD") == sorted(
        v["VendorNumber"] for v in sage.table("SAMLTD", "AP/APVendors"))


def test_a_list_longer_than_a_page_is_read_whole(sage: SageSandbox, tmp_path: Path) -> None:
    sage.settings(page_size=10)  # Sage's PageSize under the tap's page_size
    first = sage.run()  # no ledger: the list goes every run
    assert first.returncode == 0, first.stderr
    sage.delete("SAMLTD", "AP/APVendors", "1210")
    sage.clear_requests()

    second = sage.run(state=first.final_state)

    assert second.returncode == 0, second.stderr
    for company in COMPANIES:
        numbers = sorted(v["VendorNumber"] for v in sage.table(company, "AP/APVendors"))
        assert vendor_numbers(second, company) == numbers
        assert len(keys_only_reads(sage, company)) == -(-len(numbers) // 10)  # ceil: one request per page
