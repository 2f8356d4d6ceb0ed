"""Which vendors Sage still has: the `vendor_keys` stream, read only when a deletion may have
happened since the last run.

Sage 300 keeps no trace of a deleted record, and `vendors` is read incrementally (only what
was maintained since the bookmark), so a deleted vendor is never read again. The complete list
of vendor numbers is what tells a target which ones are gone (a target compares it with what
it delivered). Reading that list is one keys-only request (``$select=VendorNumber``) per page
of Sage's PageSize: a few for most companies, 1,001 for 100,000 vendors at PageSize 100. So
the list is sent only when a deletion may have happened, decided per run:

- Every run asks each company's first page of vendor numbers with ``$count=true``: the number
  of vendors Sage has now (T). A company whose vendors were read whole in this run (the first
  run, ``--full-refresh``) has its list already and costs nothing.
- With a ledger, the STATE of the last run that the target confirmed holds, per company, T
  then and a mark in the ledger (an entry id and its run). Every vendor created since was read
  by `vendors` in a later run (its DateLastMaintained is at least the bookmark), so the keys the
  tap read for the first time after the mark (``Ledger.new_keys``) are the vendors created
  since. If T now = T then + those, no vendor that existed then is gone: nothing is sent. Any
  other count (a deletion, a vendor created and read in the same moment, a mark the ledger
  does not hold after a restore) sends the list: a check that can only err towards sending.
- Without a ledger (a warehouse load) or without that STATE, the list is sent every run.

When it is sent, it is sent for every company (the first pages are reused: a company with
fewer vendors than PageSize costs nothing more), followed by ACTIVATE_VERSION: a Singer target
of any kind reads it as "these are all the vendors". The new counts go into the STATE after
that, so they are saved only once the target confirmed what came before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_connector_core.sage300_api import FeedPaging, raise_for_sage_status
from ml_connector_core.settings import sage300_client
from tap_sage300.client import encode_query

if TYPE_CHECKING:
    from tap_sage300.tap import TapSage300

RESOURCE = "AP/APVendors"
KEY = "VendorNumber"
#: Top-level STATE key: per company, the vendor count and ledger mark of the last run.
STATE_KEY = "vendor_counts"
PLUGIN = "tap-sage300"


@dataclass
class _Company:
    count: int | None  # vendors in Sage now (None: the server sent no count)
    numbers: bytes | None = None  # the whole list, read by `vendors` in this run
    first_page: tuple[dict[str, Any], str] | None = None  # (body, URL) of the keys read
    unchanged: bool = False  # the count says no vendor is gone since the last run


class VendorKeyPlan:
    """For one run: whether the vendor lists are sent, and what each company's list is."""

    def __init__(self, tap: TapSage300) -> None:
        self.tap = tap
        self._whole: dict[str, bytes] = {}  # company -> numbers, from a whole `vendors` read
        self._companies: dict[str, _Company] | None = None
        self.send = False
        self.reason = ""

    # -- what `vendors` read ---------------------------------------------------------------

    def read_whole(self, company: str, numbers: bytes) -> None:
        """`vendors` read every vendor of `company` in this run (no date filter), complete."""
        self._whole[company] = numbers

    # -- the decision ------------------------------------------------------------------------

    def decide(self) -> None:
        """Once per run, after `vendors`: count each company's vendors and check the count."""
        if self._companies is not None:
            return
        audit = self.tap.audit
        mark = audit.ledger.latest_entry() if audit.ledger is not None else None
        saved = self.tap.state.get(STATE_KEY) or {}
        companies: dict[str, _Company] = {}
        reasons = []
        for company in self.tap.config["company_ids"]:
            whole = self._whole.get(company)
            if whole is not None:
                found = _Company(whole.count(b"\n"), numbers=whole)
            else:
                body, url = self._first_page(company)
                found = _Company(_count(body), first_page=(body, url))
            found.unchanged, why = self._unchanged(company, found.count, saved.get(company))
            if not found.unchanged:
                reasons.append(f"{company}: {why}")
            companies[company] = found
        self._companies = companies
        self.send = bool(reasons)
        self.reason = "; ".join(reasons)
        self._marks = {company: {"count": found.count,
                                 **({"mark": list(mark)} if mark is not None else {})}
                       for company, found in companies.items() if found.count is not None}
        log = self.tap.logger
        if self.send:
            log.info("vendor_keys: sending every vendor number (%s)", self.reason)
        else:
            log.info("vendor_keys: no vendor deleted since the last run (counts %s)",
                     ", ".join(f"{c} {f.count}" for c, f in companies.items()))

    def _unchanged(self, company: str, count: int | None, saved: Any) -> tuple[bool, str]:
        """Whether no vendor counted at the saved mark is gone (see the module docstring)."""
        ledger = self.tap.audit.ledger
        if ledger is None:
            return False, "no ledger to tell new vendors from old ones"
        if count is None:
            return False, "Sage sent no @odata.count"
        if not isinstance(saved, dict) or not isinstance(saved.get("mark"), list) \
                or not isinstance(saved.get("count"), int):
            return False, "no count from an earlier run"
        mark_id, mark_run = saved["mark"]
        if ledger.entry_run(int(mark_id)) != mark_run:
            return False, "the ledger does not hold the earlier run's mark"
        new = ledger.new_keys(PLUGIN, "vendors", self.tap.audit.system(company), int(mark_id))
        expected = saved["count"] + new
        if count == expected:
            return True, ""
        return False, (f"{count} vendors in Sage, {saved['count']} at the last run and {new} "
                       f"new since")

    def state(self) -> dict[str, Any]:
        """What the STATE keeps for the next run's check."""
        return dict(self._marks)

    # -- the lists ---------------------------------------------------------------------------

    def numbers(self, company: str) -> Iterator[str]:
        """Every vendor number of `company` (call only when `send`)."""
        assert self._companies is not None
        found = self._companies[company]
        if found.numbers is not None:
            for number in found.numbers.split(b"\n"):
                if number:
                    yield number.decode()
            return
        assert found.first_page is not None
        yield from self._scan(company, *found.first_page)

    def _client(self, company: str) -> Any:
        tap = self.tap
        return sage300_client(tap.config, company, policy=tap.retry_policy,
                              session=tap.http_session)

    def _select(self) -> str:
        return self.tap.field_names.wire(RESOURCE, KEY)

    def _first_page(self, company: str) -> tuple[dict[str, Any], str]:
        client = self._client(company)
        paging = FeedPaging(client.base_url, top=self._page_size())
        url = (f"{client.url(RESOURCE)}?"
               f"{encode_query({'$select': self._select(), **paging.first_options()})}")
        response = client.call("GET", url)
        raise_for_sage_status(response, client.username, f"Reading {RESOURCE} of company "
                                                           f"{company} (vendor numbers)")
        return response.json(), url

    def _scan(self, company: str, body: dict[str, Any], url: str) -> Iterator[str]:
        """The keys-only read, from its first page on: paged and checked complete like every
        Sage read (FeedPaging)."""
        client = self._client(company)
        paging = FeedPaging(client.base_url, top=self._page_size())
        names = self.tap.field_names
        while True:
            for record in body.get("value") or ():
                number = names.from_wire(RESOURCE, record).get(KEY)
                if isinstance(number, str) and number.strip():
                    yield number.rstrip()
            next_url = paging.next_url(body, url)
            if next_url is None:
                break
            response = client.call("GET", next_url)
            raise_for_sage_status(response, client.username,
                                  f"Reading {RESOURCE} of company {company} (vendor numbers)")
            body, url = response.json(), next_url
        warning = paging.check(RESOURCE, company)  # IncompleteRead fails the run
        if warning:
            self.tap.logger.warning(warning)

    def _page_size(self) -> int:
        return int(self.tap.config.get("page_size", 1000))


def _count(body: dict[str, Any]) -> int | None:
    value = body.get("@odata.count")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
