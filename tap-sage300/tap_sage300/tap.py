"""tap-sage300: reads master data and AP batches from the Sage 300 Web API (skeleton)."""

from __future__ import annotations

from singer_sdk import Stream, Tap
from singer_sdk import typing as th


class TapSage300(Tap):
    name = "tap-sage300"
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, required=True,
                    description="Web API root, e.g. https://erp.example.com/Sage300WebApi/v1.0/-"),
        th.Property("company_ids", th.ArrayType(th.StringType), required=True,
                    description="Sage 300 company (org) ids, e.g. [SAMINC]"),
        th.Property("username", th.StringType, required=True),
        th.Property("password", th.StringType, required=True, secret=True),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        return []


if __name__ == "__main__":
    TapSage300.cli()
