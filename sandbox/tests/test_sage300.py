"""The Sage 300 Web API simulator over real HTTP, one test per behaviour of the reference.

Every call goes through ``requests`` to a :class:`SimulatorServer` on loopback; nothing is
mocked. The ``sage`` fixture resets the demo data, the settings and the faults before each test.
"""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests

from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.http import SimulatorServer
from mlc_sandbox.sage300 import Sage300Simulator

LEGACY_AUTH = (SAGE_USER, SAGE_PASSWORD.upper())
DUPLICATE_TAIL = ("\n\nIf you want to add this invoice, add characters to the document number to "
                  "make it unique.")


class Sage:
    """A test client: the company URL, Basic auth with the uppercase rule, admin helpers."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.root = f"{server.base_url}/Sage300WebApi/v1.0/-"
        self.base = f"{self.root}/SAMINC"
        self.admin = f"{server.base_url}/_sandbox"
        self.http = requests.Session()
        self.http.auth = LEGACY_AUTH

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}/{path}"

    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        return self.http.get(self.url(path), params=params, timeout=10, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.http.post(self.url(path), json=body, timeout=10, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.http.patch(self.url(path), json=body, timeout=10, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.http.put(self.url(path), json=body, timeout=10, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.http.delete(self.url(path), timeout=10, **kw)

    def values(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every record of a feed, following nextLinks."""
        response = self.get(path, params)
        assert response.status_code == 200, response.text
        page = response.json()
        rows = list(page["value"])
        while "@odata.nextLink" in page:
            page = self.get(page["@odata.nextLink"]).json()
            rows += page["value"]
        return rows

    def settings(self, **changes: Any) -> None:
        requests.patch(f"{self.admin}/settings", json=changes, timeout=10).raise_for_status()

    def faults(self, **config: Any) -> None:
        requests.put(f"{self.admin}/faults", json=config, timeout=10).raise_for_status()

    def touch(self, resource: str, key: Any, changes: dict[str, Any],
              company: str = "SAMINC") -> dict[str, Any]:
        response = requests.post(f"{self.admin}/touch", timeout=10, json={
            "company": company, "resource": resource, "key": key, "changes": changes})
        response.raise_for_status()
        return response.json()


def error_of(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    assert body["message"]["lang"] == "en-US"
    return response.status_code, body["code"], body["message"]["value"]


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    running = SimulatorServer(Sage300Simulator(data="demo", seed=0)).start()
    yield running
    running.stop()


@pytest.fixture
def sage(server: SimulatorServer) -> Sage:
    client = Sage(server)
    requests.delete(f"{client.admin}/faults", timeout=10).raise_for_status()
    requests.post(f"{client.admin}/reset", json={"seed": 0, "data": "demo"},
                  timeout=30).raise_for_status()
    return client


# ---------------------------------------------------------------------------------------------
# Invoice payload helpers
# ---------------------------------------------------------------------------------------------

def invoice(document: str, vendor: str = "1200", amount: float = 100.0, tax: float = 5.0,
            **extra: Any) -> dict[str, Any]:
    return {"VendorNumber": vendor, "DocumentNumber": document, "DocumentType": "Invoice",
            "DocumentDate": "2026-09-10", "InvoiceDescription": f"Invoice {document}",
            "InvoiceDetails": [{"GLAccount": "6100200", "DistributedAmount": amount,
                                "TaxAmount1": tax, "DistributionDescription": "Supplies"}],
            "InvoiceOptionalFields": [{"OptionalField": "BWINVID", "Value": f"bw-{document}"}],
            **extra}


def batch(*invoices: dict[str, Any], **header: Any) -> dict[str, Any]:
    return {"Description": header.pop("Description", "Import test"), **header,
            "Invoices": list(invoices)}


def batch_numbers(sage: Sage) -> list[int]:
    return [b["BatchNumber"] for b in sage.values("AP/APInvoiceBatches",
                                                  {"$select": "BatchNumber"})]


# ---------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------

def test_legacy_install_wants_user_and_password_uppercased(sage: Sage) -> None:
    url = sage.url("AP/APVendors?$top=1")
    assert requests.get(url, auth=LEGACY_AUTH, timeout=10).status_code == 200
    for auth in [(SAGE_USER, SAGE_PASSWORD), (SAGE_USER.lower(), SAGE_PASSWORD.upper()),
                 (SAGE_USER, SAGE_PASSWORD.lower()), (SAGE_USER, "")]:
        response = requests.get(url, auth=auth, timeout=10)
        assert response.status_code == 401, auth
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Sage300WebApi"'
        assert error_of(response)[1] == "Unauthorized"
    for header in [None, "Basic !!notbase64", "Bearer abc", "Basic " +
                   base64.b64encode(b"WEBAPI").decode()]:
        headers = {"Authorization": header} if header else {}
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 401 and error_of(response)[1] == "Unauthorized"


def test_case_sensitive_install_compares_the_password_exactly(sage: Sage) -> None:
    sage.settings(password_case_sensitive=True)
    url = sage.url("AP/APVendors?$top=1")
    assert requests.get(url, auth=(SAGE_USER, SAGE_PASSWORD), timeout=10).status_code == 200
    assert requests.get(url, auth=LEGACY_AUTH, timeout=10).status_code == 401
    assert requests.get(url, auth=(SAGE_USER.lower(), SAGE_PASSWORD),
                        timeout=10).status_code == 401


def test_auth_is_checked_on_every_call_including_metadata_and_writes(sage: Sage) -> None:
    for method, path in [("GET", "AP/$metadata"), ("POST", "AP/APVendors"),
                         ("PATCH", "AP/APVendors('1200')"), ("DELETE", "AP/APVendors('1200')"),
                         ("POST", "AP/APPostInvoices('$process')")]:
        response = requests.request(method, sage.url(path), json={}, timeout=10)
        assert response.status_code == 401, (method, path)
    assert sage.get("AP/APVendors('1200')").status_code == 200  # nothing was deleted


def test_iis_windows_auth_challenges_negotiate_and_ntlm_before_sage(sage: Sage) -> None:
    sage.settings(iis_windows_auth=True)
    for url in [sage.url("AP/APVendors"), f"{sage.server.base_url}/Sage300WebApi/nothing"]:
        response = requests.get(url, auth=LEGACY_AUTH, timeout=10, stream=True)
        challenges = response.raw.headers.getlist("WWW-Authenticate")
        assert response.status_code == 401
        assert challenges == ["Negotiate", "NTLM"]
        assert response.headers["Content-Type"].startswith("text/html")
        assert "401 - Unauthorized" in response.text
    sage.settings(iis_windows_auth=False)
    assert sage.get("AP/APVendors").status_code == 200


def test_iis_refuses_a_query_string_over_2048_characters(sage: Sage) -> None:
    vendors = " or ".join(f"VendorNumber eq '{1200 + 10 * n}'" for n in range(40))
    fits = sage.get("AP/APVendors", {"$filter": vendors[:1200].rsplit(" or ", 1)[0]})
    assert fits.status_code == 200 and fits.json()["value"]
    too_long = sage.get("AP/APVendors", {"$filter": vendors + " or " + vendors})
    assert too_long.status_code == 404
    assert "Microsoft-IIS/10.0" in too_long.headers["Server"]
    assert "404.15" in too_long.text and "query string is too long" in too_long.text


def test_module_without_web_api_right_is_forbidden(sage: Sage) -> None:
    sage.settings(forbidden_modules=["PO"])
    response = sage.get("PO/POPurchaseOrders")
    assert response.status_code == 403 and error_of(response)[1] == "Forbidden"
    assert sage.get("PO/$metadata").status_code == 403
    assert sage.get("AP/APVendors").status_code == 200


# ---------------------------------------------------------------------------------------------
# Routing, keys, metadata, verbs
# ---------------------------------------------------------------------------------------------

def test_odata_response_headers(sage: Sage) -> None:
    response = sage.get("AP/APVendors")
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert response.headers["OData-Version"] == "4.0"
    assert response.json()["@odata.context"] == f"{sage.base}/AP/$metadata#APVendors"


@pytest.mark.parametrize("path", [
    "/Sage300WebApi/v1.0/-/SAMXXX/AP/APVendors", "/Sage300WebApi/v1.0/-/saminc/AP/APVendors",
    "/Sage300WebApi/v1.0/-/SAMINC/XX/APVendors", "/Sage300WebApi/v1.0/-/SAMINC/AP/APFoo",
    "/Sage300WebApi/v1.0/-/SAMINC/AP/apvendors", "/Sage300WebApi/v1.0/-/SAMINC/AP/Vendors",
    "/Sage300WebApi/-/SAMINC/AP/APVendors", "/Sage300WebApi/v1.0/-/SAMINC/AP",
    "/Sage300WebApi/v1.0/-/SAMINC/AP/APVendors('1200')/VendorName",
])
def test_unknown_company_module_or_resource_is_resource_not_found(sage: Sage, path: str) -> None:
    response = sage.get(f"{sage.server.base_url}{path}")
    status, code, message = error_of(response)
    assert (status, code) == (404, "ResourceNotFound")
    assert "No HTTP resource was found" in message


def test_unknown_record_is_record_not_found(sage: Sage) -> None:
    for path in ["AP/APVendors('9999')", "AP/APInvoiceBatches(999)",
                 "GL/GLSegmentCodes(SegmentNumber='000002',SegmentCodeKey='777')"]:
        assert error_of(sage.get(path)) == (
            404, "RecordNotFound", "A Record cannot be found for the specified entity key")


def test_entity_keys_in_every_form(sage: Sage) -> None:
    for path in ["AP/APVendors('1200')", "AP/APVendors(1200)", "AP/APVendors(VendorNumber='1200')",
                 "AP/APVendors(VendorNumber = '1200')"]:
        response = sage.get(path)
        assert response.status_code == 200, path
        assert response.json()["VendorNumber"] == "1200"
        assert response.json()["@odata.context"] == f"{sage.base}/AP/$metadata#APVendors/$entity"
    for key in ["SegmentNumber='000002',SegmentCodeKey='200'",
                "SegmentCodeKey='200',SegmentNumber='000002'", "'000002','200'",
                "SegmentNumber = '000002', SegmentCodeKey = '200'"]:
        response = sage.get(f"GL/GLSegmentCodes({key})")
        assert response.status_code == 200, key
        assert response.json()["SegmentCodeDescription"] == "Warehouse East"
    number = sage.post("AP/APInvoiceBatches", batch(invoice("K-1"))).json()["BatchNumber"]
    for key in [f"{number}", f"BatchNumber={number}", f"BatchNumber = {number}"]:
        assert sage.get(f"AP/APInvoiceBatches({key})").json()["BatchNumber"] == number
    doc = sage.get("AP/APPostedDocuments(VendorNumber='1200',DocumentNumber='H1200-001')")
    assert doc.status_code == 200 and doc.json()["BatchNumber"] == 1
    encoded = quote("(VendorNumber = '1200')")
    assert sage.get(f"AP/APVendors{encoded}").status_code == 200


@pytest.mark.parametrize("path", [
    "AP/APInvoiceBatches('5')", "AP/APInvoiceBatches(abc)", "AP/APVendors('1200)",
    "AP/APVendors('1200','1')", "AP/APVendors(Vendor='1200')", "AP/APVendors(12 00)",
    "GL/GLSegmentCodes('000002')", "GL/GLSegmentCodes(SegmentNumber='000002','200')",
    "AP/APVendors()",
])
def test_malformed_keys_are_invalid_entity_key(sage: Sage, path: str) -> None:
    status, code, _ = error_of(sage.get(path))
    assert (status, code) == (400, "InvalidEntityKey")


def test_metadata_is_edmx_v4_with_entity_sets_keys_and_complex_details(sage: Sage) -> None:
    response = sage.get("AP/$metadata")
    assert response.status_code == 200 and "xml" in response.headers["Content-Type"]
    root = ET.fromstring(response.content)
    edmx, edm = "{http://docs.oasis-open.org/odata/ns/edmx}", "{http://docs.oasis-open.org/odata/ns/edm}"
    assert root.tag == f"{edmx}Edmx" and root.get("Version") == "4.0"
    schemas = {s.get("Namespace"): s for s in root.iter(f"{edm}Schema")}
    models = schemas["Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models"]
    container = schemas["Default"].find(f"{edm}EntityContainer")
    assert container is not None and container.get("Name") == "Container"
    sets = {s.get("Name"): s.get("EntityType") for s in container.iter(f"{edm}EntitySet")}
    assert {"APVendors", "APInvoiceBatches", "APPostedDocuments", "APTerms"} <= set(sets)
    types = {t.get("Name"): t for t in models.iter(f"{edm}EntityType")}
    batch_type = types[sets["APInvoiceBatches"].rsplit(".", 1)[1]]
    keys = [ref.get("Name") for ref in batch_type.iter(f"{edm}PropertyRef")]
    assert keys == ["BatchNumber"]
    props = {p.get("Name"): p.get("Type") for p in batch_type.iter(f"{edm}Property")}
    assert props["BatchNumber"] == "Edm.Decimal"
    assert props["Invoices"] == "Collection(Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models.Invoice)"
    complex_types = {t.get("Name") for t in models.iter(f"{edm}ComplexType")}
    assert {"Invoice", "InvoiceDetail", "InvoiceOptionalField"} <= complex_types
    assert not list(models.iter(f"{edm}NavigationProperty"))
    gl = ET.fromstring(sage.get("GL/$metadata").content)
    segment = next(t for t in gl.iter(f"{edm}EntityType") if t.get("Name") == "SegmentCode")
    assert [r.get("Name") for r in segment.iter(f"{edm}PropertyRef")] == [
        "SegmentNumber", "SegmentCodeKey"]
    account = next(t for t in gl.iter(f"{edm}EntityType") if t.get("Name") == "Account")
    assert "DateLastMaintained" not in {p.get("Name") for p in account.iter(f"{edm}Property")}


def metadata_properties(sage: Sage, module: str, type_name: str) -> set[str]:
    edm = "{http://docs.oasis-open.org/odata/ns/edm}"
    root = ET.fromstring(sage.get(f"{module}/$metadata").content)
    struct = next(t for t in root.iter() if t.get("Name") == type_name
                  and t.tag in (f"{edm}EntityType", f"{edm}ComplexType"))
    return {p.get("Name") for p in struct.iter(f"{edm}Property")}


def test_an_older_version_lacks_fields_and_names_one_differently_everywhere(sage: Sage) -> None:
    """``version: older``: what $metadata leaves out, the install refuses in $select, $filter
    and POST bodies and never answers; the renamed field carries the same data."""
    line_before = sage.values("PO/POPurchaseOrders", {"$top": 1})[0]["PurchaseOrderLines"][0]
    sage.settings(version="older")

    assert {"FaxNumber", "WebSite"}.isdisjoint(metadata_properties(sage, "AP", "Vendor"))
    assert "DistributionDescription" not in metadata_properties(sage, "AP", "InvoiceDetail")
    line_props = metadata_properties(sage, "PO", "PurchaseOrderLine")
    assert "GLExpenseAccount" in line_props and "ExpenseAccount" not in line_props
    for query in ({"$select": "VendorNumber,FaxNumber"}, {"$filter": "WebSite eq 'x'"}):
        refused = sage.get("AP/APVendors", query)
        assert refused.status_code == 400, refused.text
        assert "Could not find a property named" in refused.text
    assert "FaxNumber" not in sage.values("AP/APVendors", {"$top": 1})[0]
    line = sage.values("PO/POPurchaseOrders", {"$top": 1})[0]["PurchaseOrderLines"][0]
    assert line["GLExpenseAccount"] == line_before["ExpenseAccount"] and "ExpenseAccount" \
        not in line
    assert sage.get("PO/POPurchaseOrders", {"$filter": "PurchaseOrderNumber eq 'PO100001'"}
                    ).status_code == 200
    described = sage.post("AP/APInvoiceBatches", batch(invoice("OLD-1")))
    assert described.status_code == 400 and "DistributionDescription" in described.text
    plain = invoice("OLD-2")
    del plain["InvoiceDetails"][0]["DistributionDescription"]
    created = sage.post("AP/APInvoiceBatches", batch(plain))
    assert created.status_code == 201, created.text
    assert "DistributionDescription" not in created.json()["Invoices"][0]["InvoiceDetails"][0]

    sage.settings(version="current")  # the upgrade: every field back, the data kept
    line = sage.values("PO/POPurchaseOrders", {"$top": 1})[0]["PurchaseOrderLines"][0]
    assert line["ExpenseAccount"] == line_before["ExpenseAccount"]
    assert "FaxNumber" in sage.values("AP/APVendors", {"$top": 1})[0]


@pytest.mark.parametrize(("method", "path"), [
    ("PATCH", "PO/POPurchaseOrders(10001)"), ("PUT", "PO/POPurchaseOrders(10001)"),
    ("DELETE", "PO/POPurchaseOrders(10001)"), ("PUT", "AP/APInvoiceBatches(1)"),
    ("DELETE", "AP/APInvoiceBatches(1)"), ("POST", "AP/APPostedDocuments"),
    ("PATCH", "AP/APPostedDocuments(VendorNumber='1200',DocumentNumber='H1200-001')"),
    ("GET", "AP/APPostInvoices"), ("GET", "AP/APPostInvoices('$process')"),
    ("PATCH", "AP/APVendors"), ("DELETE", "AP/APVendors"), ("POST", "AP/$metadata"),
    ("GET", "AP/APInvoiceBatches('$template')"),
])
def test_verbs_the_real_api_lacks_are_method_not_allowed(sage: Sage, method: str,
                                                          path: str) -> None:
    response = sage.http.request(method, sage.url(path), json={}, timeout=10)
    status, code, _ = error_of(response)
    assert (status, code) == (405, "MethodNotAllowed")
    assert sage.get("PO/POPurchaseOrders(10001)").status_code == 200


def test_post_to_a_key_is_invalid_action(sage: Sage) -> None:
    for path in ["AP/APVendors('1200')", "AP/APVendors('$process')", "AP/APPostInvoices",
                 "AP/APInvoiceBatches(3)"]:
        status, code, _ = error_of(sage.post(path, {}))
        assert (status, code) == (400, "InvalidAction"), path


def test_template_returns_a_default_entity(sage: Sage) -> None:
    response = sage.post("AP/APInvoiceBatches('$template')")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("#APInvoiceBatches/$entity")
    assert body["BatchStatus"] == "Open" and body["Invoices"] == []
    process = sage.post("AP/APPostInvoices($template)").json()
    assert process["ProcessAllBatches"] == "Donotpostallbatches"
    assert batch_numbers(sage) == []  # nothing was created


def test_writes_without_json_content_type_are_internal_server_error(sage: Sage) -> None:
    response = sage.http.post(sage.url("AP/APVendors"), data='{"VendorNumber":"X1"}',
                              headers={"Content-Type": "text/plain"}, timeout=10)
    assert error_of(response)[:2] == (500, "InternalServerError")
    assert sage.get("AP/APVendors('X1')").status_code == 404


# ---------------------------------------------------------------------------------------------
# GET feed: paging, options
# ---------------------------------------------------------------------------------------------

def test_paging_follows_absolute_next_links_with_every_option_kept(sage: Sage) -> None:
    sage.settings(page_size=10)
    every = sage.values("AP/APVendors")
    active = [v["VendorNumber"] for v in every if v["Status"] == "Active"]
    url = sage.url("AP/APVendors?$filter=Status%20eq%20'Active'&$select=VendorNumber,Status"
                   "&$count=true&custom=1")
    seen, pages = [], 0
    while url:
        response = sage.get(url)
        text, page = response.text, response.json()
        pages += 1
        assert page["@odata.count"] == len(active)
        assert page["@odata.context"].endswith("#APVendors(VendorNumber,Status)")
        assert all(set(v) == {"VendorNumber", "Status"} for v in page["value"])
        seen += [v["VendorNumber"] for v in page["value"]]
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith(sage.base + "/AP/APVendors?")
            assert "$filter=Status%20eq%20'Active'" in url and "$count=true" in url
            assert "$select=VendorNumber,Status" in url and "custom=1" in url
            assert f"$skip={len(seen)}" in url
            assert text.index('"@odata.nextLink"') > text.index('"value"')
    assert seen == active and pages == 3
    assert [v["VendorNumber"] for v in every] == sorted(v["VendorNumber"] for v in every)


def test_top_larger_than_the_page_is_reduced_in_next_links(sage: Sage) -> None:
    sage.settings(page_size=10)
    page = sage.get("AP/APVendors", {"$top": 25, "$skip": 2, "$select": "VendorNumber"}).json()
    sizes, links = [len(page["value"])], []
    while "@odata.nextLink" in page:
        links.append(page["@odata.nextLink"])
        page = sage.get(page["@odata.nextLink"]).json()
        sizes.append(len(page["value"]))
    assert sizes == [10, 10, 5]
    assert "$top=15&$skip=12" in links[0] and "$top=5&$skip=22" in links[1]


def test_pages_can_come_without_next_links_and_without_the_count(sage: Sage) -> None:
    # A server that caps pages at its PageSize but writes no nextLink (and one that ignores
    # $count): the client only sees short pages and must go on with $skip itself.
    sage.settings(page_size=10, next_link=False)
    every = [v["VendorNumber"] for v in sage.values("AP/APVendors")]
    assert len(every) == 10  # values() stops where the links stop
    page = sage.get("AP/APVendors", {"$top": 25, "$count": "true",
                                     "$select": "VendorNumber"}).json()
    assert len(page["value"]) == 10 and "@odata.nextLink" not in page
    assert page["@odata.count"] == 32
    seen = [v["VendorNumber"] for v in page["value"]]
    while page["value"]:
        page = sage.get("AP/APVendors", {"$skip": len(seen), "$select": "VendorNumber"}).json()
        assert "@odata.nextLink" not in page
        seen += [v["VendorNumber"] for v in page["value"]]
    sage.settings(next_link=True)
    assert seen == [v["VendorNumber"] for v in sage.values("AP/APVendors")]

    sage.settings(odata_count=False)
    page = sage.get("AP/APVendors", {"$count": "true", "$top": 3}).json()
    assert "@odata.count" not in page and len(page["value"]) == 3
    for bad in ({"next_link": "no"}, {"odata_count": 0}):
        assert requests.patch(f"{sage.admin}/settings", json=bad, timeout=10).status_code == 400


def test_percent_encoded_dollar_options_work(sage: Sage) -> None:
    response = sage.get("AP/APVendors?%24filter=VendorNumber%20eq%20%271200%27&%24select=VendorNumber")
    assert response.json()["value"] == [{"VendorNumber": "1200"}]
    response = sage.get("AP/APVendors?$filter=VendorNumber+eq+'1210'&$select=VendorNumber")
    assert response.json()["value"] == [{"VendorNumber": "1210"}]


def test_select_top_skip_count(sage: Sage) -> None:
    every = [v["VendorNumber"] for v in sage.values("AP/APVendors")]
    page = sage.get("AP/APVendors", {"$top": 5, "$skip": 3, "$count": "true",
                                     "$select": "VendorNumber,VendorName"}).json()
    assert [v["VendorNumber"] for v in page["value"]] == every[3:8]
    assert page["@odata.count"] == len(every) and isinstance(page["@odata.count"], int)
    assert "@odata.nextLink" not in page
    assert set(page["value"][0]) == {"VendorNumber", "VendorName"}
    assert sage.get("AP/APVendors", {"$top": 0}).json()["value"] == []
    assert sage.get("AP/APVendors", {"$skip": 1000}).json()["value"] == []
    assert "@odata.count" not in sage.get("AP/APVendors", {"$count": "false"}).json()
    assert sage.get("AP/APVendors", {"$select": "*", "$top": 1}).json()["value"][0]["City"]
    batches = sage.get("AP/APInvoiceBatches", {"$select": "Invoices"})
    assert batches.status_code == 200  # detail collections can be selected


def test_orderby_on_key_and_simple_properties(sage: Sage) -> None:
    every = sage.values("AP/APVendors")
    by_name = sage.values("AP/APVendors", {"$orderby": "VendorName desc,VendorNumber"})
    expected = sorted(every, key=lambda v: v["VendorNumber"])
    expected = sorted(expected, key=lambda v: v["VendorName"], reverse=True)
    assert [v["VendorNumber"] for v in by_name] == [v["VendorNumber"] for v in expected]
    desc = sage.values("AP/APVendors", {"$orderby": "VendorNumber desc"})
    assert [v["VendorNumber"] for v in desc] == sorted((v["VendorNumber"] for v in every),
                                                       reverse=True)
    by_inactive = sage.values("AP/APVendors", {"$orderby": "InactiveDate"})
    assert by_inactive[0]["InactiveDate"] is None and by_inactive[-1]["InactiveDate"]


def test_entity_get_takes_select_only(sage: Sage) -> None:
    body = sage.get("AP/APVendors('1200')", {"$select": "VendorNumber,Status"}).json()
    assert set(body) == {"@odata.context", "VendorNumber", "Status"}
    assert error_of(sage.get("AP/APVendors('1200')", {"$top": 1}))[:2] == (
        400, "InvalidParameters")


def test_default_page_size_is_100_and_a_2000_vendor_company_pages_correctly() -> None:
    running = SimulatorServer(Sage300Simulator(data="2000", seed=0)).start()
    try:
        client = Sage(running)
        first = client.get("AP/APVendors", {"$count": "true"}).json()
        assert len(first["value"]) == 100 and first["@odata.count"] == 2032
        numbers, pages, page = [], 0, first
        while True:
            pages += 1
            numbers += [v["VendorNumber"] for v in page["value"]]
            if "@odata.nextLink" not in page:
                break
            page = client.get(page["@odata.nextLink"]).json()
        assert pages == 21 and len(numbers) == len(set(numbers)) == 2032
        assert numbers == sorted(numbers)
        client.settings(page_size=1000)
        bulk = client.values("AP/APVendors", {"$select": "VendorNumber",
                                              "$filter": "startswith(VendorNumber,'V')"})
        assert len(bulk) == 2000
    finally:
        running.stop()


# ---------------------------------------------------------------------------------------------
# $filter
# ---------------------------------------------------------------------------------------------

def _filtered(sage: Sage, path: str, expression: str, key: str = "VendorNumber") -> list[Any]:
    return [r[key] for r in sage.values(path, {"$filter": expression})]


@pytest.mark.parametrize(("op", "check"), [
    ("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b), ("gt", lambda a, b: a > b),
    ("ge", lambda a, b: a >= b), ("lt", lambda a, b: a < b), ("le", lambda a, b: a <= b),
])
def test_filter_comparison_operators_on_strings_numbers_and_dates(sage: Sage, op: str,
                                                                  check: Any) -> None:
    vendors = sage.values("AP/APVendors")
    assert _filtered(sage, "AP/APVendors", f"VendorNumber {op} '1300'") == [
        v["VendorNumber"] for v in vendors if check(v["VendorNumber"], "1300")]
    assert _filtered(sage, "AP/APVendors", f"DateLastMaintained {op} 2026-01-15T00:00:00Z") == [
        v["VendorNumber"] for v in vendors if check(v["DateLastMaintained"][:10], "2026-01-15")]
    documents = sage.values("AP/APPostedDocuments")
    for literal, value in [("150.5", 150.5), ("200", 200)]:
        got = _filtered(sage, "AP/APPostedDocuments", f"OriginalDocumentAmount {op} {literal}",
                        "DocumentNumber")
        assert got == [d["DocumentNumber"] for d in documents
                       if check(d["OriginalDocumentAmount"], value)]
    got = _filtered(sage, "AP/APPostedDocuments", f"EntryNumber {op} 4", "DocumentNumber")
    assert got == [d["DocumentNumber"] for d in documents if check(d["EntryNumber"], 4)]


def test_filter_and_or_not_and_parentheses(sage: Sage) -> None:
    vendors = sage.values("AP/APVendors")

    def expect(predicate: Any) -> list[str]:
        return [v["VendorNumber"] for v in vendors if predicate(v)]
    assert _filtered(sage, "AP/APVendors", "Status eq 'Active' and Terms eq 'N30'") == expect(
        lambda v: v["Status"] == "Active" and v["Terms"] == "N30")
    assert _filtered(sage, "AP/APVendors", "Terms eq 'N15' or Terms eq 'COD' or "
                     "VendorNumber eq '1200'") == expect(
        lambda v: v["Terms"] in ("N15", "COD") or v["VendorNumber"] == "1200")
    assert _filtered(sage, "AP/APVendors", "not (Status eq 'Active')") == expect(
        lambda v: v["Status"] != "Active")
    assert _filtered(sage, "AP/APVendors", "(Terms eq 'N30' or Terms eq 'N45') and "
                     "not startswith(VendorNumber,'12')") == expect(
        lambda v: v["Terms"] in ("N30", "N45") and not v["VendorNumber"].startswith("12"))
    assert _filtered(sage, "AP/APVendors", "Terms eq 'N15' or Terms eq 'N30' and "
                     "Status eq 'Inactive'") == expect(
        lambda v: v["Terms"] == "N15" or (v["Terms"] == "N30" and v["Status"] == "Inactive"))


def test_filter_string_functions(sage: Sage) -> None:
    vendors = sage.values("AP/APVendors")
    for expression, predicate in [
        ("startswith(VendorNumber,'13')", lambda v: v["VendorNumber"].startswith("13")),
        ("endswith(VendorName,'Inc.')", lambda v: v["VendorName"].endswith("Inc.")),
        ("contains(VendorName,'Supplies')", lambda v: "Supplies" in v["VendorName"]),
        ("contains(tolower(VendorName),'supplies')",
         lambda v: "supplies" in v["VendorName"].lower()),
        ("length(ShortName) gt 6", lambda v: len(v["ShortName"]) > 6),
        ("startswith(VendorName,'A') eq false", lambda v: not v["VendorName"].startswith("A")),
    ]:
        assert _filtered(sage, "AP/APVendors", expression) == [
            v["VendorNumber"] for v in vendors if predicate(v)], expression


def test_filter_literal_kinds(sage: Sage) -> None:
    vendors = sage.values("AP/APVendors")
    inactive = [v["VendorNumber"] for v in vendors if v["Status"] == "Inactive"]
    assert inactive and _filtered(sage, "AP/APVendors", "Status eq 'Inactive'") == inactive
    assert _filtered(sage, "AP/APVendors", "InactiveDate ne null") == inactive
    assert len(_filtered(sage, "AP/APVendors", "InactiveDate eq null")) == len(vendors) - len(
        inactive)
    assert _filtered(sage, "AP/APVendors", "OnHold eq 'OnHold'") == [
        v["VendorNumber"] for v in vendors if v["OnHold"] == "OnHold"]
    assert _filtered(sage, "AP/APVendors", "DateLastMaintained ge 2026-01-15") == _filtered(
        sage, "AP/APVendors", "DateLastMaintained ge 2026-01-15T00:00:00Z")
    assert _filtered(sage, "AP/APVendors", "DateLastMaintained ge 2026-01-15T01:00:00+02:00") \
        == _filtered(sage, "AP/APVendors", "DateLastMaintained ge 2026-01-14")
    assert _filtered(sage, "AP/APPostedDocuments", "OriginalDocumentAmount eq 105",
                     "DocumentNumber") == ["H1200-001"]
    assert _filtered(sage, "AP/APPostedDocuments", "DocumentTotalBeforeTaxes eq 112.25",
                     "DocumentNumber") == ["H1200-002"]
    assert _filtered(sage, "AP/APPostedDocuments", "-1 lt EntryNumber and EntryNumber lt 1.5e0",
                     "DocumentNumber") == ["H1200-001", "H1200-002"]


def test_quotes_are_escaped_by_doubling_and_cannot_change_the_query(sage: Sage) -> None:
    assert sage.post("AP/APVendors", {"VendorNumber": "Q1", "VendorName": "O'Brien & Sons",
                                      "ShortName": "OBRIEN"}).status_code == 201
    assert _filtered(sage, "AP/APVendors", "VendorName eq 'O''Brien & Sons'") == ["Q1"]
    hostile = "x' or VendorNumber ne '"
    escaped = hostile.replace("'", "''")
    assert _filtered(sage, "AP/APVendors", f"VendorName eq '{escaped}'") == []
    assert _filtered(sage, "AP/APVendors", "contains(VendorName,'''')") == ["Q1"]
    unescaped = sage.get("AP/APVendors", {"$filter": f"VendorName eq '{hostile}' and 1 eq 1'"})
    assert error_of(unescaped)[:2] == (400, "InvalidParameters")


def test_date_filters_compare_whole_days(sage: Sage) -> None:
    sage.settings(today="2026-03-01")
    touched = sage.touch("AP/APVendors", "1200", {"VendorName": "Renamed"})
    assert touched["DateLastMaintained"] == "2026-03-01T00:00:00Z"
    query = "VendorNumber eq '1200' and DateLastMaintained {} {}"
    for op, literal, hit in [("gt", "2026-03-01T10:00:00Z", False),
                             ("ge", "2026-03-01T10:00:00Z", True),
                             ("ge", "2026-03-01T00:00:00Z", True),
                             ("eq", "2026-03-01T15:30:00Z", True),
                             ("lt", "2026-03-01T23:59:59Z", False),
                             ("le", "2026-03-01T23:59:59Z", True),
                             ("ge", "2026-03-01", True), ("gt", "2026-02-28T23:00:00Z", True),
                             ("ge", "2026-03-02T00:00:00Z", False)]:
        got = _filtered(sage, "AP/APVendors", query.format(op, literal))
        assert got == (["1200"] if hit else []), (op, literal)


def test_server_offset_serializes_dates_and_shifts_datetime_literals(sage: Sage) -> None:
    sage.settings(today="2026-02-28")
    sage.touch("AP/APVendors", "1200", {"VendorName": "Renamed"})
    query = "VendorNumber eq '1200' and DateLastMaintained ge 2026-03-01T00:00:00Z"
    assert _filtered(sage, "AP/APVendors", query) == []
    sage.settings(offset="-04:00")
    vendor = sage.get("AP/APVendors('1200')").json()
    assert vendor["DateLastMaintained"] == "2026-02-28T00:00:00-04:00"
    assert _filtered(sage, "AP/APVendors", query) == ["1200"]  # 2026-02-28T20:00 local
    assert _filtered(sage, "AP/APVendors", "VendorNumber eq '1200' and "
                     "DateLastMaintained ge 2026-03-01") == []


@pytest.mark.parametrize("query", [
    {"$filter": "VendorNumber eq"}, {"$filter": "VendorNumber eq '1200' and"},
    {"$filter": "Nope eq '1'"}, {"$filter": "VendorNumber eq 1200"},
    {"$filter": "DateLastMaintained ge '2026-01-01'"},
    {"$filter": "DateLastMaintained ge datetime'2026-01-01T00:00:00'"},
    {"$filter": "DateLastMaintained ge 2026-01-01T00:00:00"},
    {"$filter": "substringof('A',VendorName)"}, {"$filter": "VendorName eq 'A"},
    {"$filter": "VendorNumber EQ '1200'"}, {"$filter": "Status eq 'active'"},
    {"$filter": "Status eq 1"}, {"$filter": "VendorNumber"}, {"$filter": ""},
    {"$filter": "not VendorNumber eq '1'"}, {"$filter": "VendorNumber eq '1' eq true"},
    {"$filter": "TaxClassCode1 eq 1.5m"}, {"$filter": "year(StartDate) eq 2020"},
    {"$filter": "TaxClassCode1 add 1 eq 2"}, {"$filter": "VendorNumber in ('1200')"},
    {"$filter": "DateLastMaintained ge 2026-13-01"}, {"$filter": "(VendorNumber eq '1'"},
    {"$filter": "VendorNumber eq '1' #"},
    {"$skip": "-1"}, {"$skip": "abc"}, {"$top": "1.5"}, {"$top": "-2"}, {"$count": "yes"},
    {"$select": "Nope"}, {"$select": ""}, {"$select": "Invoices/EntryNumber"},
    {"$orderby": "Nope"}, {"$orderby": "VendorName sideways"},
    {"$orderby": "tolower(VendorName)"}, {"$expand": "Anything"}, {"$inlinecount": "allpages"},
    {"$search": "acme"}, {"$FILTER": "VendorNumber eq '1200'"},
])
def test_malformed_queries_are_invalid_parameters(sage: Sage, query: dict[str, str]) -> None:
    status, code, message = error_of(sage.get("AP/APVendors", query))
    assert (status, code) == (400, "InvalidParameters"), message
    assert message.startswith("The query specified in the URI is not valid.") and len(message) > 50


def test_each_query_option_at_most_once(sage: Sage) -> None:
    for raw in ["$top=1&$top=2", "$filter=VendorNumber%20eq%20'1200'&%24filter=Status%20eq%20"
                "'Active'", "$skip=1&$skip=1"]:
        status, code, message = error_of(sage.get(f"AP/APVendors?{raw}"))
        assert (status, code) == (400, "InvalidParameters") and "more than once" in message


def test_detail_collections_cannot_be_filtered_or_ordered(sage: Sage) -> None:
    for query in [{"$filter": "Invoices eq null"}, {"$orderby": "Invoices"}]:
        assert error_of(sage.get("AP/APInvoiceBatches", query))[:2] == (400, "InvalidParameters")


# ---------------------------------------------------------------------------------------------
# Master data
# ---------------------------------------------------------------------------------------------

def test_vendor_crud_defaults_duplicates_and_date_last_maintained(sage: Sage) -> None:
    sage.settings(today="2027-04-01")
    response = sage.post("AP/APVendors", {"VendorNumber": "v9000", "VendorName": "New Co",
                                          "Email": "ap@new.example"})
    assert response.status_code == 201
    created = response.json()
    assert response.headers["Location"] == f"{sage.base}/AP/APVendors('V9000')"
    assert created["@odata.context"] == f"{sage.base}/AP/$metadata#APVendors/$entity"
    assert created["VendorNumber"] == "V9000"  # the view uppercases codes
    assert (created["Status"], created["OnHold"], created["CurrencyCode"], created["Terms"]) == (
        "Active", "NotOnHold", "USD", "N30")
    assert created["DateLastMaintained"] == "2027-04-01T00:00:00Z"
    assert created["StartDate"] == "2027-04-01T00:00:00Z"
    duplicate = sage.post("AP/APVendors", {"VendorNumber": "V9000"})
    assert error_of(duplicate)[:2] == (409, "RecordDuplicate")

    sage.settings(today="2027-04-02")
    response = sage.patch("AP/APVendors('V9000')", {"VendorName": "Renamed Co",
                                                    "Status": "Inactive"})
    assert response.status_code == 204 and response.content == b""
    after = sage.get("AP/APVendors('V9000')").json()
    assert (after["VendorName"], after["Email"]) == ("Renamed Co", "ap@new.example")
    assert after["DateLastMaintained"] == "2027-04-02T00:00:00Z"
    assert after["InactiveDate"] == "2027-04-02T00:00:00Z"
    assert _filtered(sage, "AP/APVendors", "DateLastMaintained ge 2027-04-02T00:00:00Z") == [
        "V9000"]

    sage.settings(today="2027-04-03")
    assert sage.put("AP/APVendors('V9000')", {"VendorName": "Replaced"}).status_code == 204
    replaced = sage.get("AP/APVendors('V9000')").json()
    assert (replaced["VendorName"], replaced["Email"], replaced["Status"]) == (
        "Replaced", "", "Active")
    assert replaced["DateLastMaintained"] == "2027-04-03T00:00:00Z"
    assert replaced["StartDate"] == "2027-04-01T00:00:00Z"

    assert sage.delete("AP/APVendors('V9000')").status_code == 204
    assert sage.get("AP/APVendors('V9000')").status_code == 404
    assert sage.delete("AP/APVendors('V9000')").status_code == 404


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("POST", "AP/APVendors", {"VendorNumber": "N1", "Colour": "red"}, 400, "InvalidPayload"),
    ("POST", "AP/APVendors", {"VendorNumber": 1300}, 400, "InvalidPayload"),
    ("POST", "AP/APVendors", {"VendorNumber": "N1", "Status": "active"}, 400, "InvalidPayload"),
    ("POST", "AP/APVendors", {"VendorNumber": "N1", "Status": "1"}, 400, "InvalidPayload"),
    ("POST", "AP/APVendors", {"VendorNumber": "N1", "StartDate": "01/02/2026"}, 400,
     "InvalidPayload"),
    ("POST", "AP/APVendors", {"VendorNumber": "N1", "TaxClassCode1": "1"}, 400, "InvalidPayload"),
    ("POST", "AP/APVendors", ["VendorNumber"], 400, "InvalidPayload"),
    ("POST", "AP/APVendors", {"VendorName": "No key"}, 409, "FieldInvalid"),
    ("POST", "AP/APVendors", {"VendorNumber": "ABCDEFGHIJKLM"}, 409, "FieldInvalid"),
    ("POST", "AP/APVendors", {"VendorNumber": "N1", "Terms": "N99"}, 409, "FieldInvalid"),
    ("PATCH", "AP/APVendors('1200')", {"Colour": "red"}, 400, "InvalidPayload"),
    ("PATCH", "AP/APVendors('1200')", {"VendorNumber": "1210"}, 400, "InvalidPayload"),
    ("PUT", "AP/APVendors('1200')", {"Nope": 1}, 400, "InvalidPayload"),
    ("PATCH", "AP/APVendors('9999')", {"VendorName": "x"}, 404, "RecordNotFound"),
])
def test_master_writes_refuse_bad_payloads(sage: Sage, method: str, path: str, body: Any,
                                           status: int, code: str) -> None:
    before = sage.get("AP/APVendors('1200')").json()
    response = sage.http.request(method, sage.url(path), json=body, timeout=10)
    assert error_of(response)[:2] == (status, code)
    assert sage.get("AP/APVendors('1200')").json() == before
    assert sage.get("AP/APVendors('N1')").status_code == 404


def test_terms_details_put_purges_and_patch_follows_update_operation(sage: Sage) -> None:
    created = sage.post("AP/APTerms", {"TermsCode": "S2", "Description": "Split", "TermsPaymentSchedule": [
        {"PercentageDue": 50, "DueNumberOfDays": 30}, {"PercentageDue": 50, "DueNumberOfDays": 60}]})
    assert created.status_code == 201
    schedule = created.json()["TermsPaymentSchedule"]
    assert [(r["TermsCode"], r["PaymentNumber"]) for r in schedule] == [("S2", 1), ("S2", 2)]
    assert created.json()["NumberOfPayments"] == 2
    patch = {"TermsPaymentSchedule": [
        {"PaymentNumber": 2, "UpdateOperation": "Update", "DueNumberOfDays": 45},
        {"UpdateOperation": "Insert", "PercentageDue": 0, "DueNumberOfDays": 90}]}
    assert sage.patch("AP/APTerms('S2')", patch).status_code == 204
    rows = sage.get("AP/APTerms('S2')").json()["TermsPaymentSchedule"]
    assert [(r["PaymentNumber"], r["DueNumberOfDays"]) for r in rows] == [(1, 30), (2, 45), (3, 90)]
    delete = {"TermsPaymentSchedule": [{"PaymentNumber": 3, "UpdateOperation": "Delete"}]}
    assert sage.patch("AP/APTerms('S2')", delete).status_code == 204
    assert len(sage.get("AP/APTerms('S2')").json()["TermsPaymentSchedule"]) == 2
    missing = {"TermsPaymentSchedule": [{"PaymentNumber": 9, "UpdateOperation": "Update"}]}
    assert error_of(sage.patch("AP/APTerms('S2')", missing))[:2] == (404, "RecordNotFound")
    insert_existing = {"TermsPaymentSchedule": [{"PaymentNumber": 1, "UpdateOperation": "Insert"}]}
    assert error_of(sage.patch("AP/APTerms('S2')", insert_existing))[:2] == (
        409, "RecordDuplicate")
    replace = {"Description": "Single", "TermsPaymentSchedule": [
        {"PercentageDue": 100, "DueNumberOfDays": 10}]}
    assert sage.put("AP/APTerms('S2')", replace).status_code == 204
    rows = sage.get("AP/APTerms('S2')").json()["TermsPaymentSchedule"]
    assert [(r["PaymentNumber"], r["DueNumberOfDays"]) for r in rows] == [(1, 10)]
    assert sage.put("AP/APTerms('S2')", {"Description": "None"}).status_code == 204
    assert sage.get("AP/APTerms('S2')").json()["TermsPaymentSchedule"] == []


def test_gl_accounts_crud_and_no_date_last_maintained(sage: Sage) -> None:
    account = sage.get("GL/GLAccounts('6100200')").json()
    assert "DateLastMaintained" not in account and account["AccountNumber"] == "6100-200"
    for query in [{"$filter": "DateLastMaintained ge 2026-01-01T00:00:00Z"},
                  {"$select": "DateLastMaintained"}]:
        assert error_of(sage.get("GL/GLAccounts", query))[:2] == (400, "InvalidParameters")
    created = sage.post("GL/GLAccounts", {"UnformattedAccount": "6800100",
                                          "Description": "Training - Administration",
                                          "AccountType": "IncomeStatement"})
    assert created.status_code == 201
    assert created.json()["AccountNumber"] == "6800-100"
    assert created.json()["AccountSegmentCode2"] == "100"
    assert sage.patch("GL/GLAccounts('6800100')", {"Status": "Inactive"}).status_code == 204
    assert sage.get("GL/GLAccounts('6800100')").json()["Status"] == "Inactive"
    assert sage.put("GL/GLAccounts('6800100')", {"Description": "x"}).status_code == 204
    assert sage.delete("GL/GLAccounts('6800100')").status_code == 204
    assert sage.get("GL/GLAccounts('6800100')").status_code == 404


def test_segment_codes_with_a_composite_key(sage: Sage) -> None:
    costs = sage.values("GL/GLSegmentCodes", {"$filter": "SegmentNumber eq '000002'"})
    assert [c["SegmentCodeKey"] for c in costs] == ["000", "100", "200", "300", "400", "900"]
    created = sage.post("GL/GLSegmentCodes", {"SegmentNumber": "000002", "SegmentCodeKey": "500",
                                              "SegmentCodeDescription": "Returns"})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(
        "GL/GLSegmentCodes(SegmentNumber='000002',SegmentCodeKey='500')")
    again = sage.post("GL/GLSegmentCodes", {"SegmentNumber": "000002", "SegmentCodeKey": "500"})
    assert error_of(again)[:2] == (409, "RecordDuplicate")
    key = "GL/GLSegmentCodes(SegmentCodeKey='500',SegmentNumber='000002')"
    assert sage.patch(key, {"SegmentCodeDescription": "Returns desk"}).status_code == 204
    assert sage.get(key).json()["SegmentCodeDescription"] == "Returns desk"
    assert sage.delete(key).status_code == 204
    assert sage.get(key).status_code == 404


def test_customers_support_the_five_verbs(sage: Sage) -> None:
    assert sage.post("AR/ARCustomers", {"CustomerNumber": "C9000", "CustomerName": "Shop"}
                     ).json()["OnHold"] == "No"
    assert sage.patch("AR/ARCustomers('C9000')", {"City": "Tacoma"}).status_code == 204
    assert sage.put("AR/ARCustomers('C9000')", {"CustomerName": "Shop 2"}).status_code == 204
    assert sage.get("AR/ARCustomers('C9000')").json()["City"] == ""
    assert sage.delete("AR/ARCustomers('C9000')").status_code == 204


def test_purchase_order_post_assigns_sequence_number_and_lines(sage: Sage) -> None:
    sage.settings(today="2026-05-05")
    response = sage.post("PO/POPurchaseOrders", {"Vendor": "1200", "Description": "Test PO",
                                                 "PurchaseOrderLines": [
        {"ItemNumber": "FR-1020", "QuantityOrdered": 3, "UnitCost": 2.5},
        {"ItemNumber": "PK-2040", "QuantityOrdered": 1, "UnitCost": 10}]})
    assert response.status_code == 201
    order = response.json()
    assert order["PurchaseOrderSequenceKey"] == 10161 and order["PurchaseOrderNumber"] == "PO100161"
    assert response.headers["Location"].endswith("PO/POPurchaseOrders(10161)")
    assert [(line["LineNumber"], line["ExtendedCost"], line["PurchaseOrderSequenceKey"])
            for line in order["PurchaseOrderLines"]] == [(1000, 7.5, 10161), (2000, 10, 10161)]
    assert order["ExtendedCostTotal"] == 17.5 and order["CurrencyCode"] == "USD"
    assert order["DateLastMaintained"] == "2026-05-05T00:00:00Z"
    found = _filtered(sage, "PO/POPurchaseOrders", "PurchaseOrderNumber eq 'PO100161'",
                      "PurchaseOrderSequenceKey")
    assert found == [10161]
    unknown = sage.post("PO/POPurchaseOrders", {"Vendor": "4444"})
    assert error_of(unknown) == (409, "FieldInvalid", "Vendor number 4444 does not exist.")


# ---------------------------------------------------------------------------------------------
# AP invoice batches
# ---------------------------------------------------------------------------------------------

def test_batch_post_numbers_batches_entries_lines_and_computes_totals(sage: Sage) -> None:
    sage.settings(today="2026-09-15")
    two_lines = invoice("INV-2", vendor="1210", amount=0, tax=0, InvoiceDetails=[
        {"GLAccount": "6200200", "DistributedAmount": 40.10, "TaxAmount1": 2},
        {"DistributionCode": "FREIGHT", "DistributedAmount": 9.90}], PONumber="PO100001")
    credit = invoice("CN-1", vendor="1220", amount=20, tax=1, DocumentType="CreditNote")
    response = sage.post("AP/APInvoiceBatches", batch(invoice("INV-1"), two_lines, credit,
                                                      BatchNumber=999))
    assert response.status_code == 201, response.text
    created = response.json()
    number = created["BatchNumber"]
    assert number == 5  # the history holds batches 1-4; any BatchNumber sent is ignored
    assert response.headers["Location"] == f"{sage.base}/AP/APInvoiceBatches(5)"
    assert created["@odata.context"] == f"{sage.base}/AP/$metadata#APInvoiceBatches/$entity"
    assert (created["BatchStatus"], created["NumberOfEntries"], created["BatchTotal"]) == (
        "Open", 3, 105 + 52 - 21)
    assert created["DateLastEdited"] == "2026-09-15T00:00:00Z"
    assert created["BatchDate"] == "2026-09-15T00:00:00Z"
    entries = created["Invoices"]
    assert [e["EntryNumber"] for e in entries] == [1, 2, 3]
    assert all(e["BatchNumber"] == 5 for e in entries)
    second = entries[1]
    assert [d["LineNumber"] for d in second["InvoiceDetails"]] == [20, 40]
    assert [(d["BatchNumber"], d["EntryNumber"]) for d in second["InvoiceDetails"]] == [(5, 2)] * 2
    assert second["InvoiceDetails"][1]["GLAccount"] == "6200200"  # from distribution code
    assert (second["DocumentTotalBeforeTaxes"], second["TaxAmount1"],
            second["DocumentTotalIncludingTax"]) == (50, 2, 52)
    assert second["PONumber"] == "PO100001" and second["CurrencyCode"] == "USD"
    vendor = sage.get("AP/APVendors('1210')").json()
    terms = sage.get(f"AP/APTerms('{vendor['Terms']}')").json()
    days = terms["TermsPaymentSchedule"][0]["DueNumberOfDays"]
    assert second["Terms"] == vendor["Terms"] and second["TaxGroup"] == vendor["TaxGroup"]
    assert second["DueDate"][:10] == (date(2026, 9, 10) + timedelta(days=days)).isoformat()
    assert second["PostingDate"] == second["DocumentDate"] == "2026-09-10T00:00:00Z"
    assert entries[0]["InvoiceOptionalFields"] == [
        {"BatchNumber": 5, "EntryNumber": 1, "OptionalField": "BWINVID", "Value": "bw-INV-1",
         "UpdateOperation": "Unspecified"}]
    assert sage.get("AP/APInvoiceBatches(5)").json()["Invoices"] == entries
    assert sage.post("AP/APInvoiceBatches", batch(invoice("INV-3"))).json()["BatchNumber"] == 6
    assert sage.post("AP/APInvoiceBatches", batch()).json()["NumberOfEntries"] == 0


def test_batch_post_with_ready_to_post_status(sage: Sage) -> None:
    created = sage.post("AP/APInvoiceBatches", batch(invoice("R-1"), BatchStatus="ReadyToPost"))
    assert created.json()["BatchStatus"] == "ReadyToPost"
    refused = sage.post("AP/APInvoiceBatches", batch(invoice("R-2"), BatchStatus="Posted"))
    assert error_of(refused)[:2] == (409, "FieldInvalid")


def _dup(document: str, vendor: str) -> str:
    return f"Document number '{document}' for vendor {vendor} already exists." + DUPLICATE_TAIL


def _detail(**fields: Any) -> dict[str, Any]:
    return {"InvoiceDetails": [{"DistributedAmount": 10, **fields}]}


@pytest.mark.parametrize(("bad", "message"), [
    (invoice("B-1", vendor="4444"), "Vendor number 4444 does not exist."),
    (invoice("B-1", vendor="1270"), "Vendor 1270 is inactive."),
    (invoice("B-1", **_detail(GLAccount="6999200")), "Account 6999200 does not exist."),
    (invoice("B-1", **_detail(GLAccount="6100-200")), "Account 6100-200 does not exist."),
    (invoice("B-1", **_detail(GLAccount="6100900")), "Account 6100900 is inactive."),
    (invoice("B-1", **_detail(DistributionCode="NOPE")), "Distribution code NOPE does not exist."),
    (invoice("B-1", **_detail(DistributionCode="REPAIRS")), "Distribution code REPAIRS is inactive."),
    (invoice("B-1", **_detail(DistributionCode="OLDOPS")), "Account 6100900 is inactive."),
    (invoice("B-1", **_detail()), "A distribution code or a G/L account is required for each "
                                  "detail."),
    (invoice("OK-1", vendor="1210"), _dup("OK-1", "1210")),
    (invoice("ok-1 ", vendor="1210"), _dup("ok-1 ", "1210")),
    (invoice("H1200-001"), _dup("H1200-001", "1200")),
    (invoice("", vendor="1210"), "Document number cannot be blank."),
    (invoice("B-1", vendor=""), "Vendor number cannot be blank."),
    (invoice("B-1", Terms="N99"), "Terms code N99 does not exist."),
    (invoice("B-1", CurrencyCode="EUR"), "Currency code EUR does not match the currency USD of "
                                         "vendor 1200."),
    (invoice("B-1", InvoiceDetails=[]), "Document B-1 has no distribution details. Enter at "
                                        "least one detail."),
    (invoice("B-1", DocumentTotalIncludingTax=100), "Document B-1 is out of balance: the "
     "document total 100 does not equal the distributed amount plus taxes 105."),
    (invoice("B-1", amount=-50, tax=0), "Document B-1: the document total cannot be negative. "
                                        "Enter a credit note with positive amounts instead."),
])
def test_batch_post_validation_is_field_invalid_and_all_or_nothing(sage: Sage, bad: dict,
                                                                   message: str) -> None:
    good = invoice("OK-1", vendor="1210")
    response = sage.post("AP/APInvoiceBatches", batch(good, bad))
    assert error_of(response) == (409, "FieldInvalid", message)
    assert batch_numbers(sage) == []
    assert sage.post("AP/APInvoiceBatches", batch(good)).json()["BatchNumber"] == 5


@pytest.mark.parametrize("bad", [
    invoice("B-1", DocumentType="Receipt"), invoice("B-1", DocumentTotalIncludingTax="105.00"),
    invoice("B-1", InvoiceDetails=[{"GLAccount": "6100200", "DistributedAmount": "10"}]),
    invoice("B-1", DocumentDate="10/09/2026"), invoice("B-1", Colour="red"),
    invoice("B-1", InvoiceDetails=[{"GLAccount": "6100200", "Amount": 10}]),
    invoice("B-1", InvoiceOptionalFields=[{"OptionalField": "BWINVID", "Value": 12}]),
])
def test_batch_post_with_mistyped_fields_is_invalid_payload(sage: Sage, bad: dict) -> None:
    response = sage.post("AP/APInvoiceBatches", batch(invoice("OK-1"), bad))
    assert error_of(response)[:2] == (400, "InvalidPayload")
    assert batch_numbers(sage) == []


def test_duplicate_documents_across_batches_and_posted_documents(sage: Sage) -> None:
    assert sage.post("AP/APInvoiceBatches", batch(invoice("D-1"))).status_code == 201
    for document in ["D-1", "d-1"]:
        again = sage.post("AP/APInvoiceBatches", batch(invoice(document)))
        assert error_of(again) == (409, "FieldInvalid", _dup(document, "1200"))
    assert sage.post("AP/APInvoiceBatches", batch(invoice("D-1", vendor="1210"))
                     ).status_code == 201  # the same number for another vendor is fine
    posted = sage.post("AP/APInvoiceBatches", batch(invoice("H1210-002", vendor="1210")))
    assert error_of(posted) == (409, "FieldInvalid", _dup("H1210-002", "1210"))


def test_patch_sets_ready_to_post_and_inserts_entries(sage: Sage) -> None:
    sage.settings(today="2026-09-20")
    number = sage.post("AP/APInvoiceBatches", batch(invoice("P-1"))).json()["BatchNumber"]
    url = f"AP/APInvoiceBatches({number})"
    response = sage.patch(url, {"BatchNumber": number, "BatchStatus": "ReadyToPost"})
    assert response.status_code == 204 and response.content == b""
    assert sage.get(url).json()["BatchStatus"] == "ReadyToPost"
    insert = {"Invoices": [{**invoice("P-2"), "UpdateOperation": "Insert"}]}
    assert error_of(sage.patch(url, insert))[:2] == (409, "RecordInvalid")
    sage.settings(today="2026-09-21")
    assert sage.patch(url, {"BatchStatus": "Open", **insert}).status_code == 204
    after = sage.get(url).json()
    assert [e["EntryNumber"] for e in after["Invoices"]] == [1, 2]
    assert after["Invoices"][1]["InvoiceDetails"][0]["LineNumber"] == 20
    assert (after["NumberOfEntries"], after["BatchTotal"], after["BatchStatus"]) == (2, 210, "Open")
    assert after["DateLastEdited"] == "2026-09-21T00:00:00Z"
    duplicate = {"Invoices": [{**invoice("P-1"), "UpdateOperation": "Insert"}]}
    assert error_of(sage.patch(url, duplicate)) == (409, "FieldInvalid", _dup("P-1", "1200"))
    bad_vendor = {"Invoices": [{**invoice("P-3", vendor="4444"), "UpdateOperation": "Insert"}]}
    assert error_of(sage.patch(url, bad_vendor))[:2] == (409, "FieldInvalid")
    assert sage.get(url).json() == after  # nothing changed
    update = {"Invoices": [{"EntryNumber": 2, "UpdateOperation": "Update",
                            "InvoiceDescription": "Changed"}]}
    assert sage.patch(url, update).status_code == 204
    assert sage.get(url).json()["Invoices"][1]["InvoiceDescription"] == "Changed"
    delete = {"Invoices": [{"EntryNumber": 1, "UpdateOperation": "Delete"}]}
    assert sage.patch(url, delete).status_code == 204
    assert [e["EntryNumber"] for e in sage.get(url).json()["Invoices"]] == [2]
    assert sage.post("AP/APInvoiceBatches", batch(invoice("P-1"))).status_code == 201
    assert error_of(sage.patch(url, {"Colour": "red"}))[:2] == (400, "InvalidPayload")
    assert error_of(sage.patch(url, {"BatchNumber": 99}))[:2] == (400, "InvalidPayload")
    assert error_of(sage.patch(url, {"BatchStatus": "Posted"}))[:2] == (409, "FieldInvalid")
    missing = {"Invoices": [{"EntryNumber": 9, "UpdateOperation": "Delete"}]}
    assert error_of(sage.patch(url, missing))[:2] == (404, "RecordNotFound")


def test_process_posts_ready_batches_into_posted_documents(sage: Sage) -> None:
    sage.settings(today="2026-10-01")
    ready = sage.post("AP/APInvoiceBatches", batch(invoice("X-1"), invoice("X-2", vendor="1210"),
                                                   BatchStatus="ReadyToPost")).json()
    still_open = sage.post("AP/APInvoiceBatches", batch(invoice("X-3"))).json()
    numbers = [ready["BatchNumber"], still_open["BatchNumber"]]
    response = sage.post("AP/APPostInvoices('$process')", {
        "ProcessAllBatches": "Donotpostallbatches", "FromBatch": numbers[0], "ToBatch": numbers[1]})
    assert response.status_code == 204 and response.content == b""
    posted = sage.get(f"AP/APInvoiceBatches({numbers[0]})").json()
    assert posted["BatchStatus"] == "Posted" and posted["PostingSequenceNumber"] == 5
    assert sage.get(f"AP/APInvoiceBatches({numbers[1]})").json()["BatchStatus"] == "Open"
    documents = sage.values("AP/APPostedDocuments", {
        "$filter": "VendorNumber eq '1210' and DocumentNumber eq 'X-2'"})
    assert len(documents) == 1
    assert (documents[0]["BatchNumber"], documents[0]["EntryNumber"],
            documents[0]["DocumentType"], documents[0]["OriginalDocumentAmount"]) == (
        numbers[0], 2, "Invoice", 105)
    assert _filtered(sage, "AP/APPostedDocuments", "DocumentNumber eq 'X-3'") == []
    assert error_of(sage.patch(f"AP/APInvoiceBatches({numbers[0]})",
                               {"BatchStatus": "Open"}))[:2] == (409, "RecordInvalid")
    again = sage.post("AP/APInvoiceBatches", batch(invoice("X-1")))
    assert error_of(again) == (409, "FieldInvalid", _dup("X-1", "1200"))
    assert sage.patch(f"AP/APInvoiceBatches({numbers[1]})",
                      {"BatchStatus": "ReadyToPost"}).status_code == 204
    assert sage.post("AP/APPostInvoices('$process')",
                     {"ProcessAllBatches": "Postallbatches"}).status_code == 204
    assert sage.get(f"AP/APInvoiceBatches({numbers[1]})").json()["PostingSequenceNumber"] == 6
    assert _filtered(sage, "AP/APPostedDocuments", "DocumentNumber eq 'X-3'") == ["1200"]
    bad = sage.post("AP/APPostInvoices('$process')", {"ProcessAllBatches": "All"})
    assert error_of(bad)[:2] == (400, "InvalidPayload")


def test_batch_filters_on_header_fields(sage: Sage) -> None:
    sage.settings(today="2026-09-01")
    first = sage.post("AP/APInvoiceBatches", batch(invoice("F-1"), Description="Run #a1")).json()
    sage.settings(today="2026-09-03")
    second = sage.post("AP/APInvoiceBatches", batch(invoice("F-2"), Description="Run #b2",
                                                    BatchStatus="ReadyToPost")).json()
    page = sage.get("AP/APInvoiceBatches", {
        "$filter": "Description eq 'Run #a1'", "$select": "BatchNumber,BatchStatus,Description"})
    assert page.json()["value"] == [{"BatchNumber": first["BatchNumber"], "Description": "Run #a1",
                                     "BatchStatus": "Open"}]
    for expression, expected in [
        ("BatchStatus eq 'ReadyToPost'", [second]),
        (f"BatchNumber ge {second['BatchNumber']}", [second]),
        ("DateLastEdited ge 2026-09-02T00:00:00Z", [second]),
        ("NumberOfEntries eq 0", []),
        ("startswith(Description,'Run')", [first, second]),
    ]:
        assert _filtered(sage, "AP/APInvoiceBatches", expression, "BatchNumber") == [
            b["BatchNumber"] for b in expected], expression


# ---------------------------------------------------------------------------------------------
# Faults and the request log
# ---------------------------------------------------------------------------------------------

def test_fault_429_is_odata_too_many_requests_with_retry_after(sage: Sage) -> None:
    sage.faults(rates={"429": 1.0}, retry_after=3)
    response = sage.get("AP/APVendors")
    assert error_of(response)[:2] == (429, "TooManyRequests")
    assert response.headers["Retry-After"] == "3"


def test_faults_500_and_503_are_iis_html_pages(sage: Sage) -> None:
    sage.faults(rates={"500": 1.0})
    response = sage.get("AP/APVendors")
    assert response.status_code == 500 and response.headers["Content-Type"].startswith("text/html")
    assert "Server Error in '/Sage300WebApi' Application." in response.text
    sage.faults(rates={"503": 1.0}, retry_after=2)
    response = sage.get("AP/APVendors")
    assert response.status_code == 503 and response.headers["Content-Type"].startswith("text/html")
    assert "Service Unavailable" in response.text and response.headers["Retry-After"] == "2"


def test_stall_fault_outlasts_the_client_timeout(sage: Sage) -> None:
    sage.faults(stall_seconds=1.0, schedule=[{"nth": 1, "fault": "stall", "method": "POST"}])
    with pytest.raises(requests.Timeout):
        sage.http.post(sage.url("AP/APInvoiceBatches"), json=batch(invoice("S-1")), timeout=0.3)
    assert batch_numbers(sage) == []


def test_drop_loses_the_request_and_drop_after_loses_only_the_answer(sage: Sage) -> None:
    sage.faults(schedule=[{"nth": 1, "fault": "drop", "method": "POST"},
                          {"nth": 2, "fault": "drop_after", "method": "POST"}])
    with pytest.raises(requests.ConnectionError):
        requests.post(sage.url("AP/APInvoiceBatches"), json=batch(invoice("Z-1")), timeout=5,
                      auth=LEGACY_AUTH)
    assert batch_numbers(sage) == []
    with pytest.raises(requests.ConnectionError):
        requests.post(sage.url("AP/APInvoiceBatches"), json=batch(invoice("Z-1"),
                      Description="Run z"), timeout=5, auth=LEGACY_AUTH)
    found = sage.values("AP/APInvoiceBatches", {"$filter": "Description eq 'Run z'"})
    assert [b["BatchNumber"] for b in found] == [5]  # created, though the client never heard
    retry = sage.post("AP/APInvoiceBatches", batch(invoice("Z-1")))
    assert error_of(retry) == (409, "FieldInvalid", _dup("Z-1", "1200"))


def test_request_log_never_holds_the_password(sage: Sage) -> None:
    secrets = [SAGE_PASSWORD, SAGE_PASSWORD.upper()]
    for user, password in [LEGACY_AUTH, (SAGE_USER, SAGE_PASSWORD),
                           (SAGE_USER.lower(), SAGE_PASSWORD)]:
        secrets.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        requests.get(sage.url(f"AP/APVendors?$filter=VendorName eq '{password}'"),
                     auth=(user, password), timeout=10)
        requests.post(sage.url("AP/APVendors"), auth=(user, password), timeout=10,
                      json={"VendorNumber": "L1", "VendorName": password, "Password": password})
    log = requests.get(f"{sage.admin}/requests", timeout=10).json()
    assert len(log["requests"]) == 6
    text = json.dumps(log)
    for secret in secrets:
        assert secret not in text and quote(secret) not in text


# ---------------------------------------------------------------------------------------------
# Admin API
# ---------------------------------------------------------------------------------------------

def test_touch_changes_a_record_as_a_sage_user_would(sage: Sage) -> None:
    sage.settings(today="2027-06-30")
    touched = sage.touch("AP/APVendors", "1300", {"PhoneNumber": "5550001"})
    assert touched["DateLastMaintained"] == "2027-06-30T00:00:00Z"
    vendor = sage.get("AP/APVendors('1300')").json()
    assert vendor["PhoneNumber"] == "5550001"
    assert _filtered(sage, "AP/APVendors", "DateLastMaintained ge 2027-06-30T00:00:00Z") == ["1300"]
    segment = sage.touch("GL/GLSegmentCodes", ["000002", "200"],
                         {"SegmentCodeDescription": "East"})
    assert "DateLastMaintained" not in segment
    bad = requests.post(f"{sage.admin}/touch", timeout=10, json={
        "company": "SAMINC", "resource": "AP/APVendors", "key": "1300", "changes": {"Nope": 1}})
    assert bad.status_code == 400
    rekey = requests.post(f"{sage.admin}/touch", timeout=10, json={
        "company": "SAMINC", "resource": "AP/APVendors", "key": "1300",
        "changes": {"VendorNumber": "1301"}})
    assert rekey.status_code == 400


def test_touch_removes_a_po_line_as_po_entry_would(sage: Sage) -> None:
    # POPurchaseOrders has no PUT/PATCH/DELETE: the admin touch is how a test removes a line.
    sage.settings(today="2027-06-30")
    po = sage.get("PO/POPurchaseOrders(10001)").json()
    kept = [line for line in po["PurchaseOrderLines"] if line["LineNumber"] != 4000]
    assert len(kept) == len(po["PurchaseOrderLines"]) - 1

    touched = sage.touch("PO/POPurchaseOrders", 10001, {"PurchaseOrderLines": kept})

    after = sage.get("PO/POPurchaseOrders(10001)").json()
    assert [line["LineNumber"] for line in after["PurchaseOrderLines"]] == [
        line["LineNumber"] for line in kept]
    assert after["DateLastMaintained"] == touched["DateLastMaintained"] == "2027-06-30T00:00:00Z"
    assert after["ExtendedCostTotal"] == round(sum(line["ExtendedCost"] for line in kept), 2)
    assert after["ExtendedCostTotal"] < po["ExtendedCostTotal"]


def test_settings_are_validated_and_reset_restores_everything(sage: Sage) -> None:
    for bad in [{"page_size": 0}, {"offset": "EST"}, {"today": "tomorrow"},
                {"forbidden_modules": "PO"}, {"password_case_sensitive": "yes"}, {"nope": 1},
                {"version": "2016"}]:
        assert requests.patch(f"{sage.admin}/settings", json=bad, timeout=10).status_code == 400
    sage.settings(page_size=5, forbidden_modules=["GL"], version="older")
    sage.post("AP/APInvoiceBatches", batch(invoice("R-1")))
    requests.post(f"{sage.admin}/reset", json={"seed": 0, "data": "demo"},
                  timeout=30).raise_for_status()
    settings = requests.get(f"{sage.admin}/settings", timeout=10).json()
    assert settings == {"page_size": 100, "next_link": True, "odata_count": True,
                        "offset": "Z", "password_case_sensitive": False,
                        "iis_windows_auth": False, "forbidden_modules": [], "today": None,
                        "version": "current"}
    assert batch_numbers(sage) == []
    assert "FaxNumber" in sage.get("AP/APVendors", params={"$top": 1}).json()["value"][0]


def test_info_and_snapshot(sage: Sage) -> None:
    simulator = sage.server.simulator
    info = simulator.info(sage.server.base_url)
    assert info == {"base_url": sage.root, "company_ids": ["SAMINC", "SAMLTD"],
                    "username": SAGE_USER, "password": SAGE_PASSWORD,
                    "password_case_sensitive": False, "admin_url": sage.admin}
    assert SAGE_PASSWORD.upper() in simulator.secrets()
    sage.post("AP/APInvoiceBatches", batch(invoice("SN-1")))
    state = requests.get(f"{sage.admin}/state", timeout=10).json()
    saminc = state["companies"]["SAMINC"]
    assert len(saminc["AP/APVendors"]) == 32 and len(saminc["AP/APInvoiceBatches"]) == 1
    assert len(saminc["AP/APPostedDocuments"]) == 16
    assert state["next_numbers"]["SAMINC"] == {"batch": 6, "posting_sequence": 5}
    assert state["settings"]["page_size"] == 100
    ltd = sage.get(f"{sage.root}/SAMLTD/AP/APVendors", {"$top": 1}).json()["value"][0]
    assert ltd["CurrencyCode"] == "CAD"


def pay(sage: Sage, **body: Any) -> requests.Response:
    return requests.post(f"{sage.admin}/pay", json={"company": "SAMINC", **body}, timeout=10)


def test_payments_against_a_posted_document_partial_then_full(sage: Sage) -> None:
    sage.settings(today="2026-10-01")
    created = sage.post("AP/APInvoiceBatches", batch(invoice("P-1"), BatchStatus="ReadyToPost"))
    number = created.json()["BatchNumber"]
    assert sage.post("AP/APPostInvoices('$process')", {
        "ProcessAllBatches": "Donotpostallbatches", "FromBatch": number,
        "ToBatch": number}).status_code == 204
    key = "AP/APPostedDocuments(VendorNumber='1200',DocumentNumber='P-1')"
    fresh = sage.get(key).json()
    assert (fresh["CurrentBalance"], fresh["FullyPaid"], fresh["LastPaymentNumber"]) == (
        105, "No", None)
    assert fresh["DateLastActivity"].startswith("2026-10-01")
    sage.settings(today="2026-10-05")
    first = pay(sage, vendor="1200", document="P-1", amount=40, check_number="CHK-7",
                date="2026-10-04")
    assert first.status_code == 200, first.text
    document = sage.get(key).json()
    assert (document["CurrentBalance"], document["FullyPaid"], document["LastCheckNumber"],
            document["LastPaymentNumber"]) == (65, "No", "CHK-7", 1)
    assert document["LastPaymentDate"].startswith("2026-10-04")
    assert document["DateLastActivity"].startswith("2026-10-05")
    assert pay(sage, vendor="1200", document="P-1", amount=66).status_code == 400  # > balance
    assert pay(sage, vendor="1200", document="P-1").status_code == 200  # the rest
    document = sage.get(key).json()
    assert (document["CurrentBalance"], document["FullyPaid"], document["LastPaymentNumber"]) == (
        0, "Yes", 2)
    payments = sage.values("AP/APPostedPayments", {
        "$filter": "VendorNumber eq '1200' and DocumentNumber eq 'P-1'"})
    assert [(p["PaymentNumber"], p["PaymentAmount"], p["CheckNumber"]) for p in payments][:1] == [
        (1, 40, "CHK-7")]
    assert [p["PaymentAmount"] for p in payments] == [40, 65]
    changed = sage.values("AP/APPostedDocuments", {
        "$filter": "DateLastActivity ge 2026-10-05", "$select": "DocumentNumber"})
    assert [d["DocumentNumber"] for d in changed] == ["P-1"]
    assert pay(sage, vendor="1200", document="NOPE").status_code == 400
    assert "LastCheckNumber" in metadata_properties(sage, "AP", "PostedDocument")
    assert {"PaymentNumber", "CheckNumber", "PaymentAmount"} <= metadata_properties(
        sage, "AP", "PostedPayment")
