"""`ml-connector`: the operator's command line (sandbox, audit, check, plan, run, webhooks)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from ml_connector import check, plan, retry, run, status, webhooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-connector", description=__doc__)
    parser.add_argument("--version", action="version",
                        version=f"ml-connector {importlib.metadata.version('ml-connector')}")
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="the Sage 300 and Basware simulators")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_commands.add_parser("serve", help="serve both simulators until interrupted")
    serve.add_argument("--sage-port", type=int, default=47300)
    serve.add_argument("--basware-port", type=int, default=47400)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--info-file", type=Path, help="write base URLs and credentials here (JSON)")
    serve.add_argument("--data", default="demo",
                       help="demo, large, a vendor count (e.g. 1000), or invoices-N (the demo "
                            "plus N approved invoices waiting in Basware)")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--sage-faults", type=_json_arg, help="fault settings (JSON or @file)")
    serve.add_argument("--basware-faults", type=_json_arg, help="fault settings (JSON or @file)")

    for name, help_text in (("faults", "show or set fault injection on a running sandbox"),
                            ("state", "print a running simulator's full state"),
                            ("reset", "reseed a running sandbox"),
                            ("settings", "show or change a simulator's switches")):
        sub = sandbox_commands.add_parser(name, help=help_text)
        sub.add_argument("--info-file", type=Path, required=True)
        sub.add_argument("--system", choices=["sage300", "basware", "both"], default="both")
        if name in ("faults", "settings"):
            sub.add_argument("spec", nargs="?", type=_json_arg, help="JSON or @file; omit to show")
        if name == "reset":
            sub.add_argument("--seed", type=int, default=0)
            sub.add_argument("--data", default="demo")

    # What a Sage 300 or Basware user does to fix a cause (documented recovery recipes).
    account = sandbox_commands.add_parser(
        "gl-account", help="create a GL account in the Sage 300 simulator, as a Sage user would "
                           "(through its Web API: POST GL/GLAccounts)")
    account.add_argument("--info-file", type=Path, required=True)
    account.add_argument("--company", required=True, help="Sage 300 company, e.g. SAMINC")
    account.add_argument("account", help="the account as Basware codes it, e.g. 6999-200")
    account.add_argument("--description", default="Created to fix a rejected invoice")
    again = sandbox_commands.add_parser(
        "retransfer", help="send a TransferFailed invoice to transfer again in the Basware "
                           "simulator, as a P2P user would (it waits in the queue again)")
    again.add_argument("--info-file", type=Path, required=True)
    again.add_argument("invoice", help="invoice number (INV-18825) or Basware invoice id")

    pay = sandbox_commands.add_parser(
        "pay", help="pay an AP invoice in the Sage 300 simulator, as the AP team would: its "
                    "batch posted if it is not yet (AP/APPostInvoices), then a payment "
                    "against the posted document (in full unless --amount)")
    pay.add_argument("--info-file", type=Path, required=True)
    pay.add_argument("document", help="the invoice's document number in Sage 300 (the Basware "
                                      "invoice number the connector created it with), e.g. "
                                      "INV-18801")
    pay.add_argument("--company", help="Sage 300 company, e.g. SAMINC (default: the one "
                                       "that has the document)")
    pay.add_argument("--vendor", help="vendor number (default: the document's, when one "
                                      "vendor has that document number)")
    pay.add_argument("--amount", type=float, help="a partial payment (default: the balance)")
    pay.add_argument("--check-number", help="default: Sage's next check number")
    pay.add_argument("--date", help="payment date YYYY-MM-DD (default: today in Sage)")

    commands.add_parser("audit", help="trace, failures, replay, report (see: audit --help)",
                        add_help=False)

    check.add_arguments(commands.add_parser(
        "check", help="test the connection to Sage 300 and Basware with the Meltano settings"))
    plan.add_arguments(commands.add_parser(
        "plan", help="dry run: what the next master-data, invoices and payments runs would "
                     "create, update, skip or reject, writing nothing"))
    run.add_arguments(commands.add_parser(
        "run", help="meltano run <job>, one run of a job at a time: waits for (or skips) a "
                    "run in progress, clears the record of a killed run"))
    status.add_arguments(commands.add_parser(
        "status", help="is anything stuck: last runs, invoices unanswered or TransferFailed, "
                       "master data refused, with the fix; exit 1 past thresholds"))
    webhooks.add_arguments(commands.add_parser(
        "webhooks", help="receive Basware notifications and trigger the invoice job"))
    retry.add_arguments(commands.add_parser(
        "retry", help="send again what failed once its cause is fixed (INV-18825, "
                      "SAMLTD/1600, --open): the record is read fresh from its source, "
                      "created or sent once, and Basware told the new outcome"))

    args, rest = parser.parse_known_args(argv)
    if args.command == "audit":
        from ml_connector_core.audit import main as audit_main
        return audit_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "check":
        return check.main(args)
    if args.command == "plan":
        return plan.main(args)
    if args.command == "run":
        return run.main(args)
    if args.command == "status":
        return status.main(args)
    if args.command == "webhooks":
        return webhooks.main(args)
    if args.command == "retry":
        return retry.main(args)
    if args.sandbox_command == "serve":
        return _serve(args)
    if args.sandbox_command in ("gl-account", "retransfer"):
        return _sandbox_user_action(args)
    if args.sandbox_command == "pay":
        return _sandbox_pay(args)
    return _sandbox_admin(args)


def _json_arg(value: str) -> Any:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    return json.loads(text)


def _serve(args: argparse.Namespace) -> int:
    from mlc_sandbox.faults import FaultConfig
    from mlc_sandbox.serve import start_sandbox

    sandbox = start_sandbox(
        sage_port=args.sage_port, basware_port=args.basware_port, data=args.data,
        seed=args.seed, host=args.host,
        sage_faults=FaultConfig.from_dict(args.sage_faults) if args.sage_faults else None,
        basware_faults=FaultConfig.from_dict(args.basware_faults) if args.basware_faults else None,
    )
    info = sandbox.info()
    if args.info_file:
        sandbox.write_info(args.info_file)
    print(f"Sage 300 simulator: {info['sage300']['base_url']}", flush=True)
    print(f"Basware simulator:  {info['basware']['base_url']}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sandbox.stop()
    if args.info_file and args.info_file.exists():
        args.info_file.unlink()
    return 0


def _sandbox_admin(args: argparse.Namespace) -> int:
    info = json.loads(args.info_file.read_text())
    systems = ["sage300", "basware"] if args.system == "both" else [args.system]
    result = {}
    for system in systems:
        admin = info[system]["admin_url"]
        command = args.sandbox_command
        if command == "faults":
            response = (requests.put(f"{admin}/faults", json=args.spec, timeout=10)
                        if args.spec is not None else requests.get(f"{admin}/faults", timeout=10))
        elif command == "settings":
            response = (requests.patch(f"{admin}/settings", json=args.spec, timeout=10)
                        if args.spec is not None else requests.get(f"{admin}/settings", timeout=10))
        elif command == "reset":
            response = requests.post(f"{admin}/reset", json={"seed": args.seed, "data": args.data},
                                     timeout=120)
        else:
            response = requests.get(f"{admin}/state", timeout=60)
        if response.status_code >= 400:
            print(f"{system}: {response.status_code} {response.text}", file=sys.stderr)
            return 1
        result[system] = response.json()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


def _sandbox_user_action(args: argparse.Namespace) -> int:
    """What a user of either system does to fix a cause, on a running sandbox."""
    info = json.loads(args.info_file.read_text())
    if args.sandbox_command == "gl-account":
        sage = info["sage300"]
        account = args.account.replace("-", "").upper()
        response = requests.post(
            f"{sage['base_url']}/{args.company}/GL/GLAccounts",
            json={"UnformattedAccount": account, "Description": args.description,
                  "Status": "Active"},
            auth=(sage["username"].upper(), sage["password"].upper()), timeout=30)
        if response.status_code >= 400:
            print(f"sage300: {response.status_code} {response.text}", file=sys.stderr)
            return 1
        created = response.json()
        print(f"Sage 300 {args.company}: GL account {created['AccountNumber']} "
              f"({created['Description']}) created, {created['Status']}")
        return 0
    admin = info["basware"]["admin_url"]
    state = requests.get(f"{admin}/state", timeout=60)
    state.raise_for_status()
    invoices = [invoice for tenant in state.json()["tenants"].values()
                for invoice in tenant["invoices"]
                if args.invoice in (invoice["invoiceId"], invoice.get("invoiceNumber"))]
    if len(invoices) != 1:
        print(f"basware: {len(invoices)} invoices are {args.invoice}", file=sys.stderr)
        return 1
    response = requests.post(f"{admin}/invoices/{invoices[0]['invoiceId']}/retransfer",
                             timeout=30)
    if response.status_code >= 400:
        print(f"basware: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    invoice = response.json()
    print(f"Basware: invoice {invoice.get('invoiceNumber')} ({invoice['invoiceId']}) is "
          f"{invoice['processingStatus']} again")
    return 0


def _sandbox_pay(args: argparse.Namespace) -> int:
    """An AP invoice paid in the Sage 300 simulator: the batch holding it posted through the
    Web API if it is not posted yet (as the AP team posts the connector's ready-to-post
    batches), then a payment recorded against the posted document (`/_sandbox/pay`)."""
    sage = json.loads(args.info_file.read_text())["sage300"]
    root = sage["base_url"].split("/Sage300WebApi/")[0]
    auth = (sage["username"].upper(), sage["password"].upper())
    state = requests.get(f"{root}/_sandbox/state", timeout=60)
    state.raise_for_status()
    found = [(company, batch, entry)
             for company, tables in state.json()["companies"].items()
             if args.company in (None, company)
             for batch in tables.get("AP/APInvoiceBatches", [])
             for entry in batch.get("Invoices", [])
             if entry.get("DocumentNumber") == args.document
             and args.vendor in (None, entry.get("VendorNumber"))]
    if len(found) != 1:
        print(f"sage300: {len(found)} AP invoices have document number {args.document}"
              + (" (name the --company and --vendor)" if found else ""), file=sys.stderr)
        return 1
    company, batch, entry = found[0]
    if batch.get("BatchStatus") != "Posted":
        posted = requests.post(
            f"{sage['base_url']}/{company}/AP/APPostInvoices('$process')",
            json={"ProcessAllBatches": "Donotpostallbatches", "FromBatch": batch["BatchNumber"],
                  "ToBatch": batch["BatchNumber"]}, auth=auth, timeout=120)
        if posted.status_code >= 400:
            print(f"sage300: {posted.status_code} {posted.text}", file=sys.stderr)
            return 1
        print(f"Sage 300 {company}: AP batch {batch['BatchNumber']} posted")
    body = {"company": company, "vendor": entry["VendorNumber"], "document": args.document,
            "amount": args.amount, "check_number": args.check_number, "date": args.date}
    paid = requests.post(f"{root}/_sandbox/pay", timeout=60,
                         json={k: v for k, v in body.items() if v is not None})
    if paid.status_code >= 400:
        print(f"sage300: {paid.status_code} {paid.text}", file=sys.stderr)
        return 1
    document = paid.json()
    print(f"Sage 300 {company}: invoice {args.document} of vendor {entry['VendorNumber']} paid "
          f"(check {document['LastCheckNumber']}, payment {document['LastPaymentNumber']}, "
          f"{document['LastPaymentDate'][:10]}); balance {document['CurrentBalance']:.2f} of "
          f"{document['OriginalDocumentAmount']:.2f} {document['CurrencyCode']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
