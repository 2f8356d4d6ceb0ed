"""The AP team's exception desk, end to end: `ml-connector audit failures` and `audit trace`
as docs/ledger.md and tap-sage300/README.md show them, run as written on the ledger of real
Meltano runs against both simulators (the demo data: `meltano run master-data`, then
`invoices`).

Every `$ ml-connector audit ...` line of the documents' ```console blocks is run as an
operator types it (from the project directory, the ledger from ML_CONNECTOR_LEDGER_URL),
and its output must be the documented one, but for what differs from run to run: times and
Basware's request ids (UUIDs), masked the same on both sides. So the examples are real and
stay real. Besides, what the desk promises: the real messages with ids intact, business ids
(never internal hashes as the id), a remedy naming the retry command, a vendor traced from its
read in Sage to its outcome in Basware, and the same history whatever id names the invoice.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from e2e import ROOT, Project

from mlc_sandbox.serve import Sandbox

CLI = str(Path(sys.executable).with_name("ml-connector"))
DOCUMENTS = (ROOT / "docs" / "ledger.md", ROOT / "tap-sage300" / "README.md")
_VOLATILE = (
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}Z"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
)


def documented() -> list[tuple[str, str, str]]:
    """(document, command, output) of every `$ ml-connector audit` in a ```console block;
    the output runs to the next `$` line or the block's end."""
    found = []
    for path in DOCUMENTS:
        for block in re.findall(r"^```console\n(.*?)^```", path.read_text(), re.M | re.S):
            for example in re.split(r"(?m)^(?=\$ )", block):
                if example.startswith("$ ml-connector audit "):
                    command, _, output = example.partition("\n")
                    found.append((path.name, command[2:], output.rstrip("\n")))
    return found


def masked(text: str) -> str:
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines())


def audit(project: Project, command: str) -> subprocess.CompletedProcess[str]:
    """The command as typed (`ml-connector audit ...`), in the project directory."""
    args = shlex.split(command)
    assert args[:2] == ["ml-connector", "audit"], command
    return subprocess.run([CLI, *args[1:]], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def demo(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The demo's two jobs on fresh demo data (the session sandbox reseeded, as
    `fresh_sandbox` does, once for the module: the tests only read the ledger afterwards)."""
    for server in (sandbox.sage300, sandbox.basware):
        admin = f"{server.base_url}/_sandbox"
        requests.delete(f"{admin}/faults", timeout=10).raise_for_status()
        requests.post(f"{admin}/reset", json={"seed": 0, "data": "demo"},
                      timeout=60).raise_for_status()
    project = Project.create(sandbox, tmp_path_factory.mktemp("desk"))
    for job in ("master-data", "invoices"):
        run = project.run(job)
        assert run.ok, run.output[-4000:]
    return project


def test_every_documented_audit_command_prints_what_the_documents_show(demo: Project) -> None:
    examples = documented()
    assert {command for _, command, _ in examples} >= {
        "ml-connector audit failures", "ml-connector audit trace INV-18825",
        "ml-connector audit trace SAMINC/1200"}
    for document, command, output in examples:
        result = audit(demo, command)
        shown = result.stdout + result.stderr  # an ambiguous id is answered on stderr
        assert result.returncode == (1 if "different records" in output else 0), (
            command, result.stderr)
        assert masked(shown) == masked(output), (
            f"{document}: `{command}` printed:\n{shown}")


def test_every_id_form_docs_ledger_md_lists_finds_its_record(demo: Project) -> None:
    """The table of ids `trace` takes, each typed as it shows it: the ids of the demo's
    records; those the demo's two companies share are listed as ambiguous (exit 1)."""
    doc = (ROOT / "docs" / "ledger.md").read_text()
    table = doc.split("| what | how it is typed |", 1)[1].split("\n\n", 1)[0]
    typed = [id_ for row in table.splitlines()[2:]
             for id_ in re.findall(r"`([^`]+)`", row.split("|")[2])
             if not id_.startswith(("x-amzn", "X-BW"))]
    assert len(typed) == 14, typed
    shared = {"5/9", "batch 5 entry 9", "1000-000"}  # both demo companies have one
    for id_ in typed:
        result = audit(demo, f"ml-connector audit trace {id_}")
        if id_ in shared:
            assert result.returncode == 1 and "names 2 different records" in result.stderr, id_
        else:
            assert result.returncode == 0, (id_, result.stderr)
            assert result.stdout.split()[0] in ("invoice", "vendor", "order", "account"), id_


def test_the_inline_failures_commands(demo: Project) -> None:
    doc = (ROOT / "docs" / "ledger.md").read_text()
    recent = "ml-connector audit failures --since 2d"
    history = "ml-connector audit failures --all"
    assert f"`{recent}`" in doc and f"`{history}`" in doc
    every = audit(demo, "ml-connector audit failures").stdout.splitlines()
    since = audit(demo, recent).stdout.splitlines()
    assert since[0].startswith("6 open failure(s) in 5 cause(s) since ")
    assert since[1:] == every[1:]
    lines = audit(demo, history).stdout.splitlines()
    assert lines[0] == "6 failed record(s), 6 still open in 5 cause(s)"
    # docs/operations.md's, for the records Basware refuses.
    operations = "ml-connector audit failures --since 1d"
    assert f"`{operations}`" in (ROOT / "docs" / "operations.md").read_text()
    assert audit(demo, operations).stdout.splitlines()[1:] == every[1:]
    assert sum(line.startswith("  - ") and line.endswith("  open") for line in lines) == 6


def test_the_readme_audit_trail_commands_as_written(demo: Project) -> None:
    """README.md's "Audit trail": the trace and failures commands typed as it shows them (from
    the project directory), and every line it shows of failures' output, in that order
    (`...` stands for what it leaves out)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^## Audit trail\n.*?^```bash\n(.*?)^```", readme, re.M | re.S)[1]
    lines = block.splitlines()
    trace = next(line for line in lines if line.startswith(".venv/bin/ml-connector audit trace"))
    at = lines.index(".venv/bin/ml-connector audit failures --since 2d")
    shown = []
    for line in lines[at + 1:]:
        if not line.startswith("#   "):
            break
        shown.append(line.removeprefix("#   "))
    assert len(shown) > 5

    def typed(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(shlex.split(command), cwd=ROOT, env=demo.env,
                              capture_output=True, text=True, timeout=120, check=False)

    traced = typed(trace)
    assert traced.returncode == 0 and traced.stdout.startswith("invoice INV-18825 "), traced
    printed = typed(lines[at])
    assert printed.returncode == 0, printed.stderr
    pattern = ".*?".join(re.escape(line).replace(re.escape("..."), ".*?")
                         for line in shown if line != "...")
    assert re.search(pattern, printed.stdout, re.S), printed.stdout


def test_failures_show_real_messages_business_ids_and_what_to_do(demo: Project) -> None:
    out = audit(demo, "ml-connector audit failures").stdout
    # The messages as recorded: account, currency and term intact, nothing collapsed.
    for message in ("GL account 6999-200 does not exist in Sage 300 company SAMINC",
                    "Basware: Currency EUR is not active in P2P",
                    "Basware: Payment term N90 does not exist for company CA01"):
        assert f"\n{message}\n" in out, out
    assert "#" not in out
    # Business ids, with the Basware invoice id only as a detail.
    assert "  - INV-18825 (vendor 1400 Polaris Office Group, company SAMINC, invoice id " in out
    assert "  - SAMLTD/1600 (Rheinland Industrietechnik GmbH)" in out
    assert "  - SAMLTD/PO200161 (vendor 1600)" in out
    assert ("What to do: Create GL account 6999-200 in Sage 300 company SAMINC (or recode the "
            "invoice in Basware), then: ml-connector retry INV-18825") in out
    assert ("What to do: Activate currency EUR in Basware P2P or change the currency in Sage "
            "300; either way the record must change in Sage 300 (Basware ignores a re-send of "
            "exactly what it refused), then: ml-connector retry SAMLTD/1600") in out
    assert out.splitlines()[0] == "6 open failure(s) in 5 cause(s)"


def test_an_invoice_has_one_history_whatever_id_names_it(demo: Project) -> None:
    by_number = audit(demo, "ml-connector audit trace INV-18825")
    assert by_number.returncode == 0, by_number.stderr
    lines = by_number.stdout.splitlines()
    steps = [line.split()[3:5] for line in lines[4:8]]
    assert steps == [["accounting_documents", "read"], ["accounting_documents", "acknowledged"],
                     ["ap_invoices", "rejected"], ["transfer_responses", "responded"]], lines
    invoice_id = re.search(r"invoice id ([0-9a-f]{32})", lines[0])[1]
    for other in (invoice_id, invoice_id.upper(), "inv-18825"):
        assert audit(demo, f"ml-connector audit trace {other}").stdout == by_number.stdout

    created = audit(demo, "ml-connector audit trace INV-37396").stdout
    entry = re.search(r"sage entry (SAMLTD)/(\d+)/(\d+)", created)
    assert entry, created
    company, batch, number = entry.groups()
    for words in (f"{company}/{batch}/{number}", f"{company} batch {batch} entry {number}"):
        assert audit(demo, f"ml-connector audit trace {words}").stdout == created


def test_a_vendor_is_traced_from_its_read_in_sage_to_basware(demo: Project) -> None:
    out = audit(demo, "ml-connector audit trace SAMINC/1200").stdout
    assert [line.split()[2:5] for line in out.splitlines()[4:]] == [
        ["tap-sage300", "vendors", "read"], ["target-basware", "vendors", "created"]], out
    assert audit(demo, "ml-connector audit trace 1600").stdout == \
        audit(demo, "ml-connector audit trace SAMLTD/1600").stdout
    ambiguous = audit(demo, "ml-connector audit trace 1200")
    assert ambiguous.returncode == 1 and ambiguous.stdout == ""
    assert "ml-connector audit trace SAMINC/1200" in ambiguous.stderr
    assert "ml-connector audit trace SAMLTD/1200" in ambiguous.stderr


def test_a_refused_record_deleted_in_sage_is_no_longer_open(fresh_sandbox: Sandbox,
                                                            tmp_path: Path) -> None:
    """Vendor SAMLTD/1610 (terms N90, refused by Basware) is deleted in Sage 300 before anyone
    fixed it: nothing to switch off in Basware, and nothing left to fix, so the next
    master-data run resolves its failure; the other refusals stay open."""
    from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER

    project = Project.create(fresh_sandbox, tmp_path)
    first = project.run("master-data")
    assert first.ok, first.output[-4000:]
    assert "  - SAMLTD/1610 " in audit(project, "ml-connector audit failures").stdout
    deleted = requests.delete(
        f"{fresh_sandbox.sage300.base_url}/Sage300WebApi/v1.0/-/SAMLTD/AP/APVendors('1610')",
        auth=(SAGE_USER, SAGE_PASSWORD.upper()), timeout=30)
    assert deleted.status_code == 204, deleted.text

    second = project.run("master-data")

    assert second.ok, second.output[-4000:]
    failures = audit(project, "ml-connector audit failures").stdout
    assert "SAMLTD/1610" not in failures and "  - SAMLTD/1600 " in failures, failures
    history = audit(project, "ml-connector audit failures --all").stdout
    assert re.search(r"  - SAMLTD/1610 .*  resolved: unchanged 20", history), history
    trace = audit(project, "ml-connector audit trace SAMLTD/1610").stdout
    assert "not sent: deleted in the source before Basware took it" in trace
    assert "Open failure" not in trace
