"""target-sage300 (skeleton)."""

from __future__ import annotations

from singer_sdk import typing as th
from singer_sdk.sinks import RecordSink
from singer_sdk.target_base import Target


class _PendingSink(RecordSink):
    def process_record(self, record: dict, context: dict) -> None:
        raise NotImplementedError("target-sage300 has no sinks yet")


class TargetSage300(Target):
    name = "target-sage300"
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType),
    ).to_dict()
    default_sink_class = _PendingSink


if __name__ == "__main__":
    TargetSage300.cli()
