"""The settings several plugins share: declared once (``th.Property`` groups each plugin composes
its ``config_jsonschema`` from) and read once (the API clients, the TLS-off warning, the ledger
URL, the dry run built from a plugin's config).

A setting keeps its name, type, default and ``secret`` flag in every plugin that has it, so one
meltano.yml entry, one environment variable convention and one README sentence fit them all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import typing as th

from .basware_api import REGION_BASE_URLS, BaswareClient, resolve_base_url
from .httppolicy import RetryPolicy
from .ledger.location import LEDGER_URL_ENV, default_ledger_url
from .sage300_api import Sage300Auth, Sage300Client
from .sage300_fields import FIELD_NAMES_DESCRIPTION, FieldNames

if TYPE_CHECKING:
    from .dryrun import DryRunReport

Config = Mapping[str, Any]

SAGE300_CONNECT_TIMEOUT = 10
#: Reads wait this long for Sage: the first call on a cold IIS application pool is slow.
SAGE300_READ_TIMEOUT = 120
COST_CENTER_SEGMENT = 2
BASWARE_REGION = "eu"  # the one region whose host Basware publishes
BASWARE_READ_TIMEOUT = 60
#: Requests to Basware on the wire at once (``max_requests_in_flight``): conservative, since
#: Basware publishes no rate limit; a 429 or 503 halves it for the run (httppolicy.Throttle).
BASWARE_IN_FLIGHT = 4
#: Requests to Sage 300 at once: Sage's guidance is 2 to 4 concurrent reads per Web API server.
SAGE300_IN_FLIGHT = 4
SOURCE_SYSTEM = "SAGE300"

LEDGER_DEFAULT_FILE = ("the SQLite file .ml-connector/ledger.sqlite under the Meltano project "
                       "($MELTANO_PROJECT_ROOT)")


def timeout_property(name: str, default: float, description: str) -> th.Property:
    """A timeout in seconds (more than zero)."""
    return th.Property(name, th.NumberType(exclusive_minimum=0), default=default,
                       description=description)


def _verify_tls_property(system: str) -> th.Property:
    return th.Property(
        "verify_tls", th.BooleanType, default=True,
        description=f"Verify {system}'s TLS certificate. Off only for a test server or proxy "
                    "(every run then logs a warning); for a private CA, trust the CA instead "
                    "(REQUESTS_CA_BUNDLE).")


# -- Sage 300 ------------------------------------------------------------------------------------

def sage300_connection_properties() -> list[th.Property]:
    """How a plugin reaches and logs in to the Sage 300 Web API (tap-sage300, target-sage300)."""
    return [
        th.Property("base_url", th.StringType, required=True,
                    description="Sage 300 Web API root up to the tenant segment, e.g. "
                                "https://erp.example.com/Sage300WebApi/v1.0/- (the company "
                                "follows it in every call)"),
        th.Property("username", th.StringType, required=True,
                    description="Sage 300 user id with the 'Sage 300 Web API' right, e.g. "
                                "WEBAPI; sent UPPERCASED"),
        th.Property("password", th.StringType, required=True, secret=True,
                    description="Sage 300 password; sent UPPERCASED unless keep_password_case"),
        th.Property("keep_password_case", th.BooleanType, default=False,
                    description="Send the password as typed (installs with case-sensitive "
                                "passwords); by default it is uppercased like the user id"),
        _verify_tls_property("Sage 300"),
        timeout_property("connect_timeout", SAGE300_CONNECT_TIMEOUT,
                         "Seconds to wait for a connection to Sage 300"),
        timeout_property("read_timeout", SAGE300_READ_TIMEOUT,
                         "Seconds to wait for Sage 300's answer to a read (the first call on a "
                         "cold IIS application pool is slow)"),
        th.Property("cost_center_segment", th.IntegerType(minimum=1, maximum=10),
                    default=COST_CENTER_SEGMENT,
                    description="Which GL account segment (AccountSegmentCode<n>, 1-10) is the "
                                "cost center"),
    ]


#: ``metadata_check``: when a Sage plugin checks the install's $metadata against its fields.
METADATA_CHECK_RUN, METADATA_CHECK_ONLY, METADATA_CHECK_OFF = "run", "only", "off"


def sage300_install_properties() -> list[th.Property]:
    """How a Sage plugin fits the customer's install: its own field names, and the check of
    every field the plugin uses against the install's $metadata."""
    return [
        th.Property("field_names", th.ObjectType(additional_properties=th.StringType),
                    default={}, description=FIELD_NAMES_DESCRIPTION),
        th.Property("metadata_check", th.StringType, default=METADATA_CHECK_RUN,
                    allowed_values=[METADATA_CHECK_RUN, METADATA_CHECK_ONLY, METADATA_CHECK_OFF],
                    description="Check every Sage 300 field this plugin uses against the "
                                "install's own $metadata: `run` at the start of every run (a "
                                "missing field fails the run before anything is read or "
                                "written), `only` check, print the findings as one JSON line "
                                "and stop (what `ml-connector check` runs), `off` never."),
    ]


def sage300_field_names(config: Config) -> FieldNames:
    """The ``field_names`` setting; a malformed one is refused naming the key."""
    return FieldNames(config.get("field_names") or {})


def metadata_check(config: Config) -> str:
    return str(config.get("metadata_check") or METADATA_CHECK_RUN)


def sage300_retry_policy(config: Config) -> RetryPolicy:
    """The retry policy with the configured timeouts, for reads."""
    return RetryPolicy(
        connect_timeout=float(config.get("connect_timeout") or SAGE300_CONNECT_TIMEOUT),
        read_timeout=float(config.get("read_timeout") or SAGE300_READ_TIMEOUT))


def sage300_auth(config: Config) -> Sage300Auth:
    """HTTP Basic with the uppercase rule of BRIEF decision 1 (stateless: one per run)."""
    return Sage300Auth(config["username"], config["password"],
                       keep_password_case=bool(config.get("keep_password_case", False)))


def sage300_client(config: Config, company: str, *, policy: RetryPolicy | None = None,
                   session: requests.Session | None = None) -> Sage300Client:
    """A client for one company (``session``: a requests.Session to share connections)."""
    return Sage300Client(
        base_url=config["base_url"], company=company, username=config["username"],
        password=config["password"],
        keep_password_case=bool(config.get("keep_password_case", False)),
        policy=policy or sage300_retry_policy(config),
        verify_tls=bool(config.get("verify_tls", True)), session=session)


def cost_center_segment(config: Config) -> int:
    return int(config.get("cost_center_segment") or COST_CENTER_SEGMENT)


def cost_center_field(config: Config) -> str:
    """The GL account field that holds the cost-center segment code."""
    return f"AccountSegmentCode{cost_center_segment(config)}"


def warn_if_sage300_tls_off(config: Config, logger: logging.Logger) -> bool:
    """Whether to verify Sage's certificate; logs the warning every run gets when not."""
    return _warn_if_tls_off(config, logger, "Sage 300", config.get("base_url"),
                            "Basic credentials")


# -- Basware -------------------------------------------------------------------------------------

def max_in_flight_property(*, default: int, maximum: int, description: str) -> th.Property:
    """The ``max_requests_in_flight`` setting of a plugin (what goes out at once is its own)."""
    return th.Property("max_requests_in_flight", th.IntegerType(minimum=1, maximum=maximum),
                       default=default, description=description)


def max_in_flight(config: Config, default: int) -> int:
    """``max_requests_in_flight`` as a count of requests (at least 1: one at a time)."""
    return max(1, int(config.get("max_requests_in_flight") or default))


def basware_connection_properties(*, default_scopes: str) -> list[th.Property]:
    """How a plugin reaches and authenticates to the Basware API (tap-basware, target-basware).
    ``default_scopes``: what this plugin needs."""
    return [
        th.Property("region", th.StringType, default=BASWARE_REGION,
                    allowed_values=sorted(REGION_BASE_URLS),
                    description="Basware region of the tenant (eu, us, au, ca); base_url wins "
                                "when both are set. Only the EU host is published: outside the "
                                "EU, prefer base_url from your Basware consultant"),
        th.Property("base_url", th.StringType,
                    description="Basware API root, e.g. https://api.basware.com or "
                                "https://test-api.basware.com; overrides region"),
        th.Property("client_id", th.StringType, required=True,
                    description="OAuth2 client id from the Basware provisioning consultant"),
        th.Property("client_secret", th.StringType, required=True, secret=True,
                    description="OAuth2 client secret"),
        th.Property("scopes", th.StringType, default=default_scopes,
                    description="Space-separated OAuth2 scopes to request; the default is "
                                "what this plugin needs"),
        _verify_tls_property("Basware"),
        timeout_property("read_timeout", BASWARE_READ_TIMEOUT,
                         "Seconds to wait for Basware's answer before retrying"),
        th.Property("source_system", th.StringType, default=SOURCE_SYSTEM,
                    description="sourceSystem on what the connector sends to Basware "
                                "(vendors, matching orders, transfer responses); at most 32 "
                                "characters"),
    ]


def basware_client(config: Config, *, default_scopes: str, scopes: str | None = None,
                   policy: RetryPolicy | None = None, max_in_flight: int = 0) -> BaswareClient:
    """The client a plugin's settings describe. ``scopes``/``policy``: what a one-off command
    (`ml-connector webhooks subscribe`) needs instead of the plugin's own. ``max_in_flight``:
    most requests on the wire at once over all threads (0: no bound; tap-basware's setting)."""
    return BaswareClient(
        client_id=config["client_id"], client_secret=config["client_secret"],
        scopes=scopes or config.get("scopes") or default_scopes, region=config.get("region"),
        base_url=config.get("base_url"), verify_tls=bool(config.get("verify_tls", True)),
        policy=policy or RetryPolicy(read_timeout=float(config.get("read_timeout")
                                                        or BASWARE_READ_TIMEOUT)),
        max_in_flight=max_in_flight)


def warn_if_basware_tls_off(config: Config, logger: logging.Logger) -> bool:
    """Whether to verify Basware's certificate; logs the warning every run gets when not."""
    try:
        url = resolve_base_url(config.get("region"), config.get("base_url"))
    except ValueError:
        url = None  # the client names the bad region when it is built
    return _warn_if_tls_off(config, logger, "Basware", url, "client secret")


def _warn_if_tls_off(config: Config, logger: logging.Logger, system: str, url: str | None,
                     credentials: str) -> bool:
    if config.get("verify_tls", True) is not False:
        return True
    logger.warning(
        "!!! verify_tls is OFF: %s's TLS certificate is NOT checked, so anyone on the network "
        "path to %s can read the %s and every record. Use this only against a test server or "
        "proxy; for a private CA, trust the CA instead (REQUESTS_CA_BUNDLE). !!!",
        system, url or system, credentials)
    # urllib3's InsecureRequestWarning then goes through logging (and its redaction), not
    # straight to stderr.
    logging.captureWarnings(True)
    return False


# -- audit ledger --------------------------------------------------------------------------------

def ledger_properties(*, unset: str = LEDGER_DEFAULT_FILE) -> list[th.Property]:
    """``unset``: what the plugin does with neither the setting nor $ML_CONNECTOR_LEDGER_URL."""
    return [
        th.Property("ledger_url", th.StringType, secret=True,
                    description="Audit ledger database URL (sqlite:///... or "
                                f"postgresql://...); default ${LEDGER_URL_ENV}, else {unset}"),
    ]


#: The ``ledger_url`` that turns a plugin's ledger off (tap-sage300 only: the targets and
#: tap-basware need theirs for exactly-once and the outcome handover).
LEDGER_OFF = "off"


def ledger_off(config: Config) -> bool:
    """True when the ``ledger_url`` setting is `off` (any case)."""
    return str(config.get("ledger_url") or "").strip().lower() == LEDGER_OFF


def configured_ledger_url(config: Config, *, default: bool = True) -> str | None:
    """The ``ledger_url`` setting, else $ML_CONNECTOR_LEDGER_URL (one ledger for every plugin of
    a deployment), else the project's SQLite file, or None when ``default`` is false."""
    url = config.get("ledger_url") or os.environ.get(LEDGER_URL_ENV)
    if url:
        return str(url)
    return default_ledger_url() if default else None


# -- dry run (targets) ---------------------------------------------------------------------------

#: The two settings every target with a dry run declares (and documents in --about).
DRY_RUN_DESCRIPTION = ("Dry run: check, map and compare every record with the ledger and the "
                       "destination (read-only look-ups), write nothing anywhere (no POST, "
                       "no ledger entry, no STATE) and give each record a verdict: create, "
                       "update, skip or reject. Used by `ml-connector plan`.")
DRY_RUN_REPORT_DESCRIPTION = ("File to append the dry run's verdicts to, one JSON object per "
                              "line ({stream, key, verdict, reason, source_key}); without it "
                              "they are only logged.")


def dry_run_properties() -> list[th.Property]:
    return [
        th.Property("dry_run", th.BooleanType, default=False, description=DRY_RUN_DESCRIPTION),
        th.Property("dry_run_report", th.StringType, description=DRY_RUN_REPORT_DESCRIPTION),
    ]


def dry_run_report(config: Config, plugin: str, logger: logging.Logger) -> DryRunReport | None:
    """The run's verdict collector when ``dry_run`` is on, else None (a real run)."""
    if not config.get("dry_run"):
        return None
    from .dryrun import DryRunReport  # imports the ledger (SQLAlchemy): only for a dry run

    return DryRunReport(plugin, config.get("dry_run_report"), logger)
