"""What an install's $metadata says against what a plugin uses: parsing (OData v4 as the
simulator and current Sage serve it, v3 as older installs do), verification, the install's own
names (field_names), and the one GET per module over HTTP against the Sage simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from ml_connector_core.sage300_api import Sage300AuthError, Sage300Client
from ml_connector_core.sage300_fields import (
    FieldNames,
    field_use,
    parse_metadata,
    verify,
    verify_install,
)
from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox, start_sandbox

# The shape of a current install: enums in their own namespace, reached through an alias.
V4 = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
 <edmx:DataServices>
  <Schema Namespace="Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models.Enums" Alias="E"
          xmlns="http://docs.oasis-open.org/odata/ns/edm">
   <EnumType Name="BatchStatus"><Member Name="Open" Value="1"/>
    <Member Name="ReadyToPost" Value="7"/><Member Name="Posted" Value="3"/></EnumType>
  </Schema>
  <Schema Namespace="Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models"
          xmlns="http://docs.oasis-open.org/odata/ns/edm">
   <EntityType Name="InvoiceBatch"><Key><PropertyRef Name="BatchNumber"/></Key>
    <Property Name="BatchNumber" Type="Edm.Decimal" Nullable="false"/>
    <Property Name="BatchDate" Type="Edm.DateTimeOffset"/>
    <Property Name="BatchStatus" Type="E.BatchStatus" Nullable="false"/>
    <Property Name="Invoices"
              Type="Collection(Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models.Invoice)"/>
   </EntityType>
   <ComplexType Name="Invoice">
    <Property Name="VendorNumber" Type="Edm.String"/>
    <Property Name="InvoiceDetails"
              Type="Collection(Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models.InvoiceDetail)"/>
   </ComplexType>
   <ComplexType Name="InvoiceDetail">
    <Property Name="GLAccount" Type="Edm.String"/>
    <Property Name="DistributedAmount" Type="Edm.Decimal"/>
   </ComplexType>
  </Schema>
  <Schema Namespace="Default" xmlns="http://docs.oasis-open.org/odata/ns/edm">
   <EntityContainer Name="Container">
    <EntitySet Name="APInvoiceBatches"
               EntityType="Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models.InvoiceBatch"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"""

# An older install's OData v3 document (the 2016 shape: enums as strings, Edm.DateTime).
V3 = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">
 <edmx:DataServices>
  <Schema Namespace="Sage.CA.SBS.ERP.Sage300.AR.WebApi.Models"
          xmlns="http://schemas.microsoft.com/ado/2009/11/edm">
   <EntityType Name="Customer"><Key><PropertyRef Name="CustomerNumber"/></Key>
    <Property Name="CustomerNumber" Type="Edm.String" Nullable="false"/>
    <Property Name="Status" Type="Edm.String" Nullable="false"/>
    <Property Name="DateLastMaintained" Type="Edm.DateTime"/>
   </EntityType>
   <EntityContainer Name="Container" m:IsDefaultEntityContainer="true"
      xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
    <EntitySet Name="Customers" EntityType="Sage.CA.SBS.ERP.Sage300.AR.WebApi.Models.Customer"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"""


def use(name: str, kind: str = "any", **kwargs: object):  # noqa: ANN201 - a FieldUse
    return field_use("target-sage300", "batches", name, kind, **kwargs)


def test_a_v4_document_with_aliased_enums_and_details() -> None:
    metadata = parse_metadata("AP", V4)
    batch = metadata.entity("APInvoiceBatches")
    assert batch is not None and batch.key == ["BatchNumber"]
    status = batch.properties["BatchStatus"].type
    assert status == "Sage.CA.SBS.ERP.Sage300.AP.WebApi.Models.Enums.BatchStatus"
    assert metadata.enums[status] == ["Open", "ReadyToPost", "Posted"]
    assert verify([use("AP/APInvoiceBatches/Invoices/InvoiceDetails/DistributedAmount",
                       "number"),
                   use("AP/APInvoiceBatches/BatchStatus", "choice",
                       members=("ReadyToPost", "Posted")),
                   use("AP/APInvoiceBatches/BatchNumber", "integer"),
                   use("AP/APInvoiceBatches/BatchDate", "date")], {"AP": metadata}) == []


def test_a_v3_document_of_an_older_install() -> None:
    metadata = parse_metadata("AR", V3)
    uses = [use("AR/Customers/Status", "choice", members=("Active",)),
            use("AR/Customers/DateLastMaintained", "date")]
    assert verify(uses, {"AR": metadata}) == []


def test_what_does_not_fit_is_named_with_its_fix() -> None:
    metadata = {"AP": parse_metadata("AP", V4)}
    findings = verify([
        use("AP/APInvoiceBatches/Invoices/InvoiceDetails/DistributionDescription", "text",
            optional=True),
        use("AP/APInvoiceBatches/Invoices/InvoiceDetails/GLAcount", "text"),
        use("AP/APInvoiceBatches/BatchStatus", "choice", members=("Deleted",)),
        use("AP/APInvoiceBatches/BatchDate", "number"),
        use("AP/APInvoiceBatches/Invoices/VendorNumber/Code", "text"),
        use("AP/APPostedDocuments"),
        use("PO/POPurchaseOrders/Vendor", "text"),
    ], metadata)
    by_field = {f.use.name: f for f in findings}
    assert len(findings) == 7
    optional = by_field["AP/APInvoiceBatches/Invoices/InvoiceDetails/DistributionDescription"]
    assert optional.severity == "warning" and "goes on without it" in optional.message()
    misspelt = by_field["AP/APInvoiceBatches/Invoices/InvoiceDetails/GLAcount"]
    assert misspelt.severity == "error" and misspelt.candidates[0] == "GLAccount"
    assert ('set target-sage300\'s field_names to {"AP/APInvoiceBatches/Invoices/'
            'InvoiceDetails/GLAcount": "<its name>"} (similar names in this install: '
            'GLAccount') in misspelt.message()
    member = by_field["AP/APInvoiceBatches/BatchStatus"].message()
    assert "without the member(s) Deleted (it has Open, ReadyToPost, Posted)" in member
    assert "field_names" not in member  # a rename would not add a member
    assert "is Edm.DateTimeOffset, not number" in by_field["AP/APInvoiceBatches/BatchDate"
                                                          ].message()
    assert "not a detail collection" in by_field[
        "AP/APInvoiceBatches/Invoices/VendorNumber/Code"].message()
    assert "no entity set AP/APPostedDocuments" in by_field["AP/APPostedDocuments"].message()
    assert "module PO has no $metadata" in by_field["PO/POPurchaseOrders/Vendor"].message()


def test_the_installs_own_names_are_used_on_the_wire_and_read_back() -> None:
    names = FieldNames({"AP/APInvoiceBatches/Invoices/InvoiceDetails/DistributedAmount":
                        "Amount", "AP/APInvoiceBatches/Description": "BatchDescription"})
    record = {"Description": "run 1", "Invoices": [
        {"VendorNumber": "1200", "InvoiceDetails": [{"GLAccount": "6100", "DistributedAmount": 5}]}]}
    wire = names.to_wire("AP/APInvoiceBatches", record)
    assert wire == {"BatchDescription": "run 1", "Invoices": [
        {"VendorNumber": "1200", "InvoiceDetails": [{"GLAccount": "6100", "Amount": 5}]}]}
    assert names.from_wire("AP/APInvoiceBatches", wire) == record
    assert names.to_wire("AP/APVendors", {"Description": "x"}) == {"Description": "x"}
    assert names.wire("AP/APInvoiceBatches", "Description") == "BatchDescription"
    metadata = {"AP": parse_metadata("AP", V4)}
    uses = [use("AP/APInvoiceBatches/Invoices/InvoiceDetails/Quantity", "number")]
    assert verify(uses, metadata) != []
    renamed = FieldNames({"AP/APInvoiceBatches/Invoices/InvoiceDetails/Quantity":
                          "DistributedAmount"})
    assert verify(uses, metadata, renamed) == []


@pytest.mark.parametrize(("setting", "problem"), [
    ({"APVendors/VendorNumber": "X"}, "is not '<MODULE>/<Resource>/<field>'"),
    ({"AP/APVendors": "X"}, "is not '<MODULE>/<Resource>/<field>'"),
    ({"AP/APVendors/VendorNumber": "Vendor Number"}, "must be the install's property name"),
    ({"AP/APVendors/VendorNumber": 5}, "must be the install's property name"),
])
def test_a_malformed_field_names_setting_is_refused_naming_the_key(
        setting: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match="field_names") as refused:
        FieldNames(setting)
    assert problem in str(refused.value)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    running = start_sandbox(data="demo", seed=0)
    yield running
    running.stop()


def client(sandbox: Sandbox, password: str = SAGE_PASSWORD) -> Sage300Client:
    return Sage300Client(base_url=f"{sandbox.sage300.base_url}/Sage300WebApi/v1.0/-",
                         company="SAMINC", username=SAGE_USER, password=password)


def test_one_get_per_module_against_the_simulator(sandbox: Sandbox) -> None:
    uses = [use("AP/APVendors/VendorNumber", "text"), use("AP/APVendors/Status", "choice"),
            use("GL/GLAccounts/AccountSegmentCode2", "text"),
            use("PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount", "text")]
    assert verify_install(client(sandbox), uses) == []
    log = requests.get(f"{sandbox.sage300.base_url}/_sandbox/requests", timeout=10
                       ).json()["requests"]
    assert sorted(r["path"].rsplit("/", 2)[-2] for r in log) == ["AP", "GL", "PO"]
    assert all(r["path"].endswith("/$metadata") and r["method"] == "GET" for r in log)

    requests.patch(f"{sandbox.sage300.base_url}/_sandbox/settings", json={"version": "older"},
                   timeout=10).raise_for_status()
    (finding,) = verify_install(client(sandbox), uses)
    assert finding.use.path == ("PurchaseOrderLines", "ExpenseAccount")
    assert "GLExpenseAccount" in finding.candidates
    older = FieldNames({"PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount":
                        "GLExpenseAccount"})
    assert verify_install(client(sandbox), uses, older) == []


def test_refused_credentials_are_named_before_any_field(sandbox: Sandbox) -> None:
    with pytest.raises(Sage300AuthError, match="refused the credentials for user WEBAPI"):
        verify_install(client(sandbox, "wrong"), [use("AP/APVendors")])
