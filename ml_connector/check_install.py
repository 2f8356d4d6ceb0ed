"""The parts of `ml-connector check` about this install rather than about reaching a system:

- **Sage fields**: each Sage plugin (the payments job's tap-sage300--payments too), run
  through `meltano invoke` with `metadata_check: only` (the same settings, catalog and
  field_names a run uses), checks every Sage 300 field it
  would use against the install's own `$metadata` and prints its findings; each missing
  field is one FAIL with its fix, an optional one a WARN.
- **Companies**: the company maps of the stream maps agree with the companies the plugins
  read (a company missing from a map fails every record of it, in the contract).
- **Answers to Basware**: the invoices job acknowledges what it reads (otherwise no outcome
  can ever be sent).
- **Secrets at rest**: Meltano writes each plugin's configuration, secrets included, under
  `.meltano/run/` for the length of a run; a project folder other users can read is a WARN.

The plugins run as processes, so no plugin code is imported here (as in `plan`).
"""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ml_connector.check_result import Check
from ml_connector.project_config import MeltanoError, as_bool, as_list, run_meltano

#: tap-sage300--payments (job payments) selects other streams than tap-sage300 (its posted AP
#: documents): its fields are checked on their own.
SAGE_PLUGINS = ("tap-sage300", "target-sage300", "tap-sage300--payments")
# `meltano invoke` starts the plugin's own virtualenv and reads 4 modules' $metadata.
INVOKE_TIMEOUT = 180


def _env_prefix(plugin: str) -> str:
    return plugin.upper().replace("-", "_")


def field_checks(root: Path, environment: str | None,
                 configs: dict[str, dict[str, Any] | None]) -> list[Check]:
    """Every Sage field each configured Sage plugin uses, against the install's $metadata
    (both plugins at once: each `meltano invoke` costs seconds)."""
    plugins = [plugin for plugin in SAGE_PLUGINS
               if (configs.get(plugin) or {}).get("base_url")]
    with ThreadPoolExecutor(max_workers=len(plugins) or 1) as pool:
        results = pool.map(lambda plugin: _plugin_fields(root, environment, plugin,
                                                         configs[plugin] or {}), plugins)
    return [check for checks in results for check in checks]


def _plugin_fields(root: Path, environment: str | None, plugin: str,
                   config: dict[str, Any]) -> list[Check]:
    what = f"{plugin} fields"
    if str(config.get("metadata_check") or "run") == "off":
        return [Check("sage300", what, True, "not checked: metadata_check is off (runs do not "
                      "check either)", warn=True)]
    try:
        result = run_meltano(root, environment, ["invoke", plugin], what=f"invoke {plugin}",
                             timeout=INVOKE_TIMEOUT,
                             env={f"{_env_prefix(plugin)}_METADATA_CHECK": "only"})
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except MeltanoError as exc:
        return [Check("sage300", what, False, f"could not check: {exc}. Fix: `meltano "
                      "install` if the plugin is not installed; the checks above name any "
                      "login or permission problem.")]
    except (ValueError, IndexError):
        return [Check("sage300", what, False, f"could not check: {plugin} printed no report "
                      "(is it the ml-connector plugin?)")]
    checks = []
    findings = report.get("findings") or []
    for finding in findings:
        warning = finding.get("severity") == "warning"
        checks.append(Check("sage300", f"{plugin} field {finding.get('field')}", warning,
                            str(finding.get("message")), warn=warning))
    errors = sum(f.get("severity") == "error" for f in findings)
    summary = (f"{report.get('uses')} uses of {', '.join(report.get('modules') or [])} "
               "checked against the install's $metadata: ")
    summary += f"{errors} missing (above)" if errors else "all present"
    checks.append(Check("sage300", what, not errors, summary))
    return checks


def company_checks(configs: dict[str, dict[str, Any] | None]) -> list[Check]:
    """The Sage company <-> Basware company code maps against the companies read."""
    results: list[Check] = []
    tap_sage, target_basware = configs.get("tap-sage300"), configs.get("target-basware")
    tap_basware, target_sage = configs.get("tap-basware"), configs.get("target-sage300")
    to_basware = _map(target_basware or {}, "company_codes")  # Sage company -> Basware code
    to_sage = _map(target_sage or {}, "companies")  # Basware code -> Sage company
    if tap_sage and target_basware:
        results.append(_mapped("master-data companies", as_list(tap_sage.get("company_ids")),
                               to_basware, "Sage companies", "Basware company code",
                               "target-basware's stream_map_config company_codes",
                               '{"SAMINC": "US01"}'))
    if tap_basware and target_sage:
        results.append(_mapped("invoice companies", as_list(tap_basware.get("company_codes")),
                               to_sage, "Basware company codes", "Sage company",
                               "target-sage300's stream_map_config companies",
                               '{"US01": "SAMINC"}'))
    disagree = [f"{code} -> {company} (but {company} -> {to_basware[company]})"
                for code, company in to_sage.items()
                if company in to_basware and to_basware[company] != code]
    if disagree:
        results.append(Check(
            "meltano", "company maps agree", False,
            "target-sage300's and target-basware's company maps disagree: "
            + "; ".join(disagree) + ". Invoices would go to another company than the one "
            "their POs and vendors came from. Fix: make the two maps each other's inverse."))
    return results


def _mapped(what: str, read: list[str], mapping: dict[str, str], kind: str, target: str,
            where: str, example: str) -> Check:
    """Whether every company a plugin reads has its counterpart in the next plugin's map."""
    unmapped = [company for company in read if company not in mapping]
    if unmapped:
        return Check("meltano", what, False,
                     f"{kind} {', '.join(unmapped)} are read but have no {target}: every "
                     f"record of theirs would be rejected. Fix: add them to {where}, e.g. "
                     f"{example}.")
    return Check("meltano", what, True, f"every one of the {kind} read has a {target} ("
                 + ", ".join(f"{k} -> {v}" for k, v in mapping.items()) + ")")


def acknowledge_check(configs: dict[str, dict[str, Any] | None]) -> list[Check]:
    tap_basware = configs.get("tap-basware")
    if not tap_basware or not configs.get("target-sage300"):
        return []
    if as_bool(tap_basware.get("acknowledge"), False):
        return [Check("meltano", "invoices answered", True,
                        "tap-basware acknowledges what it reads, so every outcome can be "
                        "answered to Basware")]
    return [Check("meltano", "invoices answered", False,
                    "tap-basware's acknowledge is off: invoices would be created in Sage but "
                    "never answered in Basware (a transfer response needs the invoice "
                    "acknowledged). Fix: set acknowledge to true for tap-basware "
                    "(`meltano config set tap-basware acknowledge true`).")]


def run_folder_check(root: Path) -> list[Check]:
    """Meltano's run folder holds every plugin's config, secrets included, during a run."""
    folder = root / ".meltano"
    checked = folder if folder.exists() else root
    try:
        mode = checked.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [Check("meltano", "secrets at rest", True,
                        f"{checked} is open to other users (mode {stat.filemode(mode)}); Meltano "
                        "writes each plugin's configuration, passwords and client secrets "
                        "included, under .meltano/run/ while a job runs. Fix: "
                        f"chmod 700 {checked}", warn=True)]
    return [Check("meltano", "secrets at rest", True,
                    f"{checked} is readable by its owner only")]


def _map(config: dict[str, Any], name: str) -> dict[str, str]:
    value = (config.get("stream_map_config") or {}).get(name)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def install_checks(root: Path, environment: str | None,
                   configs: dict[str, dict[str, Any] | None], *,
                   sage_reachable: bool) -> list[Check]:
    """All of the above; the field checks only once Sage answered the login checks."""
    found = [*company_checks(configs), *acknowledge_check(configs), *run_folder_check(root)]
    if sage_reachable:
        found += field_checks(root, environment, configs)
    return found
