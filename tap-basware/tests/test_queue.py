"""The accountingDocuments queue against the Basware simulator: what is emitted, what Basware
holds afterwards, and what the simulator received."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from tap_basware_testkit import COMPANIES, header

from ml_connector_core.restore import MARKS_STREAM

WAITING = "WaitingForTransfer"
IN_PROGRESS = "TransferInProgress"


def waiting(invoices: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i: inv for i, inv in invoices.items()
            if inv["processingStatus"] == WAITING and inv["companyCode"] in COMPANIES}


def basware_stamp(invoice: dict[str, Any]) -> str:
    """A simulator timestamp (`...T12:00:00.000Z`) in the tap's bookmark form."""
    return invoice["lastUpdated"].replace("Z", "000+00:00")


def api_calls(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in log if not entry["path"].startswith("/_sandbox/")]


def test_plain_extraction_emits_every_waiting_invoice_and_changes_nothing(
        basware, tap_config, run_tap, ledger_rows):
    before = basware.invoices()
    expected = waiting(before)
    assert {inv["companyCode"] for inv in expected.values()} == set(COMPANIES)

    run = run_tap(tap_config)

    records = run.records()
    assert sorted(r["invoiceId"] for r in records) == sorted(expected)
    for record in records:
        source = expected[record["invoiceId"]]
        assert record["codingRows"] == source["codingRows"]  # nested, as Basware exports them
        assert record["codingRows"], record["invoiceId"]
        for name in ("invoiceNumber", "supplierCode", "companyCode", "grossSum", "currencyCode"):
            assert record[name] == source[name]
    # acknowledge is off by default: the queue is untouched, nothing was written to Basware.
    assert basware.invoices() == before
    assert not [e for e in api_calls(basware.requests()) if e["method"] == "POST"
                and e["path"] != "/v1/tokens"]
    reads = [row for row in ledger_rows() if row["action"] == "read"
             and row["stream"] != MARKS_STREAM]  # not the mark of the state it was handed
    assert Counter(row["source_key"] for row in reads) == Counter(list(expected))
    assert all(row["direction"] == "basware->sage300" for row in reads)


def test_read_in_progress_peeks_at_what_the_next_acknowledging_run_re_emits(
        basware, tap_config, run_tap):
    """`ml-connector plan`'s peek: acknowledged invoices nobody answered come first, then
    the waiting ones, each once, and Basware is left as it was."""
    expected = waiting(basware.invoices())
    stranded = sorted(expected)[:2]
    for invoice_id in stranded:  # as a run that stopped before answering them left them
        response = basware.api("POST", f"/v1/accountingDocuments/{invoice_id}/acknowledge",
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
    before, since = basware.invoices(), basware.last_seq()

    plain = run_tap(tap_config)
    peek = run_tap({**tap_config, "read_in_progress": True})

    assert sorted(r["invoiceId"] for r in plain.records()) == sorted(set(expected)
                                                                      - set(stranded))
    ids = [r["invoiceId"] for r in peek.records()]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert {r["processingStatus"] for r in peek.records() if r["invoiceId"] in stranded} \
        == {IN_PROGRESS}
    # Each company's in-progress invoices come before its waiting ones.
    for company in COMPANIES:
        statuses = [r["processingStatus"] for r in peek.records() if r["companyCode"] == company]
        assert statuses == sorted(statuses, key=lambda s: s != IN_PROGRESS), company
    assert basware.invoices() == before
    assert not [e for e in api_calls(basware.requests(since)) if e["method"] == "POST"
                and e["path"] != "/v1/tokens"]


def test_queue_protocol_as_basware_received_it(basware, tap_config, run_tap):
    expected = waiting(basware.invoices())
    run = run_tap({**tap_config, "page_size": 3, "company_codes": [*COMPANIES, "ZZ99"]})

    ids = [r["invoiceId"] for r in run.records()]
    assert len(ids) == len(set(ids)) == len(expected)  # every page, no duplicates
    calls = api_calls(basware.requests())
    lists = [c for c in calls if c["path"] == "/v1/accountingDocuments"]
    presigned = [c for c in calls if c["path"].startswith("/_s3/")]
    # Each company code has its own query; the unknown one answers 404 = empty, not an error.
    assert {c["query"].split("companyCode=")[1].split("&")[0] for c in lists} == \
        {*COMPANIES, "ZZ99"}
    assert all("ProcessingStatus=WaitingForTransfer" in c["query"] for c in lists)
    assert [c["status"] for c in lists if "ZZ99" in c["query"]] == [404]
    # Pages after the first send the continuation token back as a request header.
    continued = [c for c in lists if header(c, "x-amz-meta-continuationtoken")]
    assert len(continued) >= len(expected) // 3 - len(COMPANIES)
    assert all(c["status"] == 302 for c in lists if "ZZ99" not in c["query"])
    # The redirected GET goes without Authorization and is served.
    assert len(presigned) == len(lists) - 1
    assert all(header(c, "Authorization") is None and c["status"] == 200 for c in presigned)
    assert all(header(c, "Authorization") for c in lists)
    # X-BW-REQUEST-ID: a UUID v4 on every call, token request and redirected GET included.
    for call in calls:
        value = header(call, "X-BW-REQUEST-ID")
        assert value and uuid.UUID(value).version == 4, call
    # One token for the whole run, shared by all streams.
    assert len([c for c in calls if c["path"] == "/v1/tokens"]) == 1


def test_acknowledge_moves_each_emitted_invoice_to_transfer_in_progress(
        basware, tap_config, run_tap, ledger_rows):
    expected = waiting(basware.invoices())

    run = run_tap({**tap_config, "acknowledge": True})

    assert sorted(r["invoiceId"] for r in run.records()) == sorted(expected)
    after = basware.invoices()
    assert {after[i]["processingStatus"] for i in expected} == {IN_PROGRESS}
    acks = [c for c in api_calls(basware.requests()) if c["path"].endswith("/acknowledge")]
    assert sorted(c["path"].split("/")[3] for c in acks) == sorted(expected)
    assert {c["status"] for c in acks} == {200}
    acknowledged = [row for row in ledger_rows() if row["action"] == "acknowledged"]
    assert sorted(row["source_key"] for row in acknowledged) == sorted(expected)
    assert all(row["bw_request_id"] and row["basware_request_id"] for row in acknowledged)
    by_bw_id = {header(c, "X-BW-REQUEST-ID"): c for c in acks}
    assert all(by_bw_id[row["bw_request_id"]]["path"].split("/")[3] == row["source_key"]
               for row in acknowledged)


def test_an_invoice_is_acknowledged_only_after_its_record_was_emitted(
        basware, tap_config, run_tap):
    """A stream map filters one invoice out: it is not emitted, so it stays in the queue."""
    expected = waiting(basware.invoices())
    kept_out = sorted(expected)[0]
    config = {**tap_config, "acknowledge": True, "stream_maps": {
        "accounting_documents": {"__filter__": f"invoiceId != '{kept_out}'"}}}

    run = run_tap(config)

    emitted = {r["invoiceId"] for r in run.records()}
    assert emitted == set(expected) - {kept_out}
    after = basware.invoices()
    assert after[kept_out]["processingStatus"] == WAITING
    assert {after[i]["processingStatus"] for i in emitted} == {IN_PROGRESS}


def test_dry_run_limit_acknowledges_only_what_was_written(basware, tap_config):
    """The SDK stops a stream after N records while our generator holds record N+1: the
    record that was never written must not be acknowledged."""
    import io
    from contextlib import redirect_stdout

    from tap_basware.tap import TapBasware

    expected = waiting(basware.invoices())
    tap = TapBasware(config={**tap_config, "acknowledge": True}, parse_env_config=False)
    out = io.StringIO()
    with redirect_stdout(out):
        tap.run_sync_dry_run(dry_run_record_limit=3,
                             streams=[tap.streams["accounting_documents"]])
    emitted = {line.split('"invoiceId":"')[1].split('"')[0]
               for line in out.getvalue().splitlines() if '"type":"RECORD"' in line}
    assert len(emitted) == 3
    after = basware.invoices()
    assert {i for i in expected if after[i]["processingStatus"] == IN_PROGRESS} == emitted


def test_second_run_re_emits_only_invoices_without_a_transfer_response(
        basware, tap_config, run_tap):
    config = {**tap_config, "acknowledge": True}
    expected = waiting(basware.invoices())
    first = run_tap(config)
    assert sorted(r["invoiceId"] for r in first.records()) == sorted(expected)

    # A crash between acknowledge and the target's outcome: no outcomes in the state.
    second = run_tap(config, state=first.final_state)

    assert sorted(r["invoiceId"] for r in second.records()) == sorted(expected)
    log = basware.requests()
    second_acks = [c for c in log if c["path"].endswith("/acknowledge")]
    assert len(second_acks) == len(expected)  # only the first run acknowledged
    assert {inv["processingStatus"] for i, inv in basware.invoices().items()
            if i in expected} == {IN_PROGRESS}


def test_new_invoice_arriving_later_is_emitted_and_acknowledged_once(
        basware, tap_config, run_tap):
    config = {**tap_config, "acknowledge": True}
    first = run_tap(config)
    created = basware.admin_invoice({"companyCode": "CA01"})

    second = run_tap(config, state=first.final_state)

    second_ids = [r["invoiceId"] for r in second.records()]
    assert second_ids.count(created["invoiceId"]) == 1
    assert basware.invoices()[created["invoiceId"]]["processingStatus"] == IN_PROGRESS


def test_plain_extraction_is_incremental_on_last_updated(basware, tap_config, run_tap):
    first = run_tap(tap_config)
    partitions = first.final_state["bookmarks"]["accounting_documents"]["partitions"]
    assert sorted(p["context"]["companyCode"] for p in partitions) == sorted(COMPANIES)
    assert all(p["replication_key"] == "lastUpdated" and p["replication_key_value"]
               for p in partitions)
    mark = basware.last_seq()
    before = basware.invoices()
    created = basware.admin_invoice({"companyCode": "US01"})

    second = run_tap(tap_config, state=first.final_state)

    # Bookmarks are inclusive: besides the new invoice, only each company's invoice stamped
    # at its bookmark instant is read again.
    marks = {p["context"]["companyCode"]: p["replication_key_value"] for p in partitions}
    again = {r["invoiceId"] for r in second.records()} - {created["invoiceId"]}
    assert created["invoiceId"] in {r["invoiceId"] for r in second.records()}
    assert again and all(basware_stamp(before[i]) == marks[before[i]["companyCode"]]
                         for i in again)
    lists = [c for c in basware.requests(mark) if c["path"] == "/v1/accountingDocuments"]
    assert lists and all("lastUpdated=" in c["query"] for c in lists)


def test_killed_mid_run_loses_nothing_and_acknowledges_only_emitted_invoices(
        basware, tap_config, tmp_path, run_tap):
    """SIGKILL the tap after a few records: every acknowledged invoice had its record written
    before the kill, and the next run emits every invoice the first one did not finish."""
    import json
    import signal
    import subprocess

    from tap_basware_testkit import TAP_EXECUTABLE

    expected = waiting(basware.invoices())
    config = {**tap_config, "acknowledge": True}
    config_file = tmp_path / "killed.json"
    config_file.write_text(json.dumps(config))
    process = subprocess.Popen([str(TAP_EXECUTABLE), "--config", str(config_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               cwd=tmp_path)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if sum('"type":"RECORD"' in seen for seen in lines) == 5:
            process.send_signal(signal.SIGKILL)
            break
    lines += process.stdout.readlines()
    process.wait(timeout=30)
    written = {json.loads(line)["record"]["invoiceId"] for line in lines
               if '"type":"RECORD"' in line}

    acknowledged = {i for i, inv in basware.invoices().items()
                    if i in expected and inv["processingStatus"] == IN_PROGRESS}
    assert acknowledged and acknowledged <= written
    assert len(acknowledged) < len(expected)

    # The next run (no state survived the kill) re-emits the acknowledged ones and reads the
    # rest from the queue: nothing is stuck, nothing lost.
    rerun = run_tap(config)
    assert sorted(r["invoiceId"] for r in rerun.records()) == sorted(expected)
    assert {inv["processingStatus"] for i, inv in basware.invoices().items()
            if i in expected} == {IN_PROGRESS}
