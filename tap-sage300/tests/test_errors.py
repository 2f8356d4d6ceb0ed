"""Failures a Sage 300 install really produces: wrong credentials, IIS Windows auth, a missing
module right, throttling and server errors. Setup problems fail the run with a message a
person can act on; transient ones are retried under the shared policy. No secret is printed."""

from __future__ import annotations

import base64
import time

import pytest
from tap_sage300_testkit import SageSandbox, TapRun

from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER

SECRETS = [SAGE_PASSWORD, SAGE_PASSWORD.upper(), SAGE_PASSWORD.lower(),
           base64.b64encode(f"{SAGE_USER}:{SAGE_PASSWORD.upper()}".encode()).decode(),
           base64.b64encode(f"{SAGE_USER}:{SAGE_PASSWORD}".encode()).decode()]


def assert_no_secret(run: TapRun) -> None:
    for secret in SECRETS:
        assert secret not in run.stdout
        assert secret not in run.stderr


def test_password_is_uppercased_by_default_and_the_user_id_always(sage: SageSandbox) -> None:
    # The simulator is a legacy install: it accepts only WEBAPI:SANDBOX-PASS1.
    run = sage.run(sage.config(username="webapi", password=SAGE_PASSWORD))
    assert run.returncode == 0, run.stderr
    assert run.of("vendors")
    assert_no_secret(run)


def test_keep_password_case_on_a_legacy_install_is_refused_with_a_hint(sage: SageSandbox) -> None:
    run = sage.run(sage.config(keep_password_case=True))

    assert run.returncode != 0
    assert "Sage 300 refused the credentials for user WEBAPI" in run.stderr
    assert "keep_password_case is on" in run.stderr
    assert not run.records
    assert_no_secret(run)


def test_keep_password_case_on_a_case_sensitive_install(sage: SageSandbox) -> None:
    sage.settings(password_case_sensitive=True)
    assert sage.run(sage.config(keep_password_case=True)).returncode == 0
    refused = sage.run(sage.config(keep_password_case=False))
    assert refused.returncode != 0
    assert "refused the credentials" in refused.stderr
    assert_no_secret(refused)


def test_wrong_password_fails_loudly_without_printing_it(sage: SageSandbox) -> None:
    run = sage.run(sage.config(password="not-the-password-42"))

    assert run.returncode != 0
    assert "Sage 300 refused the credentials for user WEBAPI" in run.stderr
    assert "not-the-password-42" not in run.stderr
    assert "NOT-THE-PASSWORD-42" not in run.stderr
    assert_no_secret(run)


def test_iis_windows_authentication_is_named_as_the_cause(sage: SageSandbox) -> None:
    sage.settings(iis_windows_auth=True)
    run = sage.run()

    assert run.returncode != 0
    assert "IIS Windows authentication is on" in run.stderr
    assert "enable Anonymous authentication and disable Windows authentication" in run.stderr
    assert_no_secret(run)


def test_missing_module_right_stops_the_run_before_any_read(sage: SageSandbox) -> None:
    """The install check reads each module's $metadata first: a module the user may not use
    fails the run before a single record is read."""
    sage.settings(forbidden_modules=["PO"])
    run = sage.run()

    assert run.returncode != 0
    assert ("Reading PO/$metadata of company SAMINC (module PO): Sage 300 user WEBAPI "
            "lacks the 'Sage 300 Web API' right for this module") in run.stderr
    assert run.records == {} and run.states == []
    assert_no_secret(run)


def test_missing_module_right_names_the_module(sage: SageSandbox) -> None:
    """Without the install check, the same right missing halfway through a run."""
    sage.settings(forbidden_modules=["PO"])
    run = sage.run(sage.config(metadata_check="off"))

    assert run.returncode != 0
    assert ("Reading PO/POPurchaseOrders of company SAMINC (module PO): Sage 300 user WEBAPI "
            "lacks the 'Sage 300 Web API' right for this module") in run.stderr
    # Streams before the PO module were read and checkpointed; the state says so.
    assert run.of("vendors") and run.states
    assert "vendors" in run.final_state["bookmarks"]


def test_unknown_company_is_a_clear_setup_error(sage: SageSandbox) -> None:
    run = sage.run(sage.config(company_ids=["SAMINC", "NOPE"]))
    assert run.returncode != 0
    assert "company NOPE" in run.stderr


@pytest.mark.parametrize("fault", ["429", "500", "503", "drop"])
def test_transient_failures_are_retried_and_nothing_is_lost(sage: SageSandbox, fault: str
                                                            ) -> None:
    # Two failures in a row on the second vendor page request, then Sage answers.
    sage.settings(page_size=10)
    sage.faults(retry_after=0, schedule=[
        {"nth": 2, "fault": fault, "path": "SAMINC/AP/APVendors"},
        {"nth": 3, "fault": fault, "path": "SAMINC/AP/APVendors"}])

    run = sage.run(sage.config(page_size=10))

    assert run.returncode == 0, run.stderr
    expected = sorted(v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors"))
    assert sorted(r["VendorNumber"] for r in run.of("vendors", "SAMINC")) == expected
    statuses = [r["status"] for r in sage.requests() if r["path"].endswith("SAMINC/AP/APVendors")]
    assert statuses[:4] == [200, None if fault == "drop" else int(fault),
                            None if fault == "drop" else int(fault), 200]
    assert "retry" in run.stderr.lower() or "backing off" in run.stderr.lower()


def test_persistent_server_errors_fail_the_run(sage: SageSandbox) -> None:
    sage.faults(retry_after=0, rates={"429": 1.0}, path="GL/GLAccounts")
    run = sage.run()

    assert run.returncode != 0
    assert "429" in run.stderr
    attempts = [r for r in sage.requests() if r["path"].endswith("SAMINC/GL/GLAccounts")]
    assert len(attempts) == 6  # the shared policy's max_tries


def test_verify_tls_off_warns_loudly(sage: SageSandbox) -> None:
    run = sage.run(sage.config(verify_tls=False))
    assert run.returncode == 0, run.stderr
    assert "verify_tls is OFF" in run.stderr
    assert "WARNING" in next(line for line in run.stderr.splitlines()
                             if "verify_tls is OFF" in line)


def test_a_stalled_request_times_out_and_is_retried(sage: SageSandbox) -> None:
    sage.faults(stall_seconds=3, schedule=[
        {"nth": 1, "fault": "stall", "path": "SAMLTD/AP/APTerms"}])

    run = sage.run(sage.config(read_timeout=1))

    assert run.returncode == 0, run.stderr
    assert len(run.of("payment_terms", "SAMLTD")) == len(sage.table("SAMLTD", "AP/APTerms"))
    assert "ReadTimeout" in run.stderr or "timed out" in run.stderr
    # The simulator logs the stalled request only when its stall ends.
    deadline = time.monotonic() + 10
    while True:
        attempts = [r for r in sage.requests() if r["path"].endswith("SAMLTD/AP/APTerms")]
        if len(attempts) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(str(r["fault"]) for r in attempts) == ["None", "stall"]
