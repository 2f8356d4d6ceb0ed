"""tap-basware: reads approved invoices from the Basware accountingDocuments queue (skeleton)."""

from __future__ import annotations

from singer_sdk import Stream, Tap
from singer_sdk import typing as th


class TapBasware(Tap):
    name = "tap-basware"
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, description="Basware API root"),
        th.Property("client_id", th.StringType, required=True),
        th.Property("client_secret", th.StringType, required=True, secret=True),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        return []


if __name__ == "__main__":
    TapBasware.cli()
