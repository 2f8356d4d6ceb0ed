"""Redaction of strings, nested data, headers and log records."""

from __future__ import annotations

import base64
import io
import json
import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_core.redaction import (
    MASK,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    redact_headers,
)


def test_masks_known_secrets_in_every_spelling() -> None:
    secret = 'p@ss "w0rd"/x'
    redactor = Redactor([secret])
    for spelling in (secret, secret.upper(), "p%40ss%20%22w0rd%22%2Fx", "p%40ss+%22w0rd%22%2Fx",
                     'p@ss \\"w0rd\\"/x'):
        assert redactor.redact(f"before {spelling} after") == f"before {MASK} after"


def test_longer_secret_is_masked_whole() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.redact("xabcdefghx") == f"x{MASK}x"


def test_credential_shapes_are_masked_without_knowing_them() -> None:
    basic = base64.b64encode(b"SAGEUSER:SOMEPASS").decode()
    redactor = Redactor()
    assert redactor.redact(f"Authorization: Basic {basic}") == f"Authorization: Basic {MASK}"
    assert redactor.redact("Bearer eyJhbGciOi.J9.x-y_z") == f"Bearer {MASK}"
    assert redactor.redact("grant_type=x&client_secret=abc%2B1&scope=y") == (
        f"grant_type=x&client_secret={MASK}&scope=y")
    assert redactor.redact('{"access_token": "a b", "n": 1}') == (
        f'{{"access_token": "{MASK}", "n": 1}}')
    assert redactor.redact("{'password': 'x'}") == f"{{'password': '{MASK}'}}"
    # Prose is left alone.
    assert redactor.redact("enable Basic authentication in IIS") == (
        "enable Basic authentication in IIS")


def test_short_secrets_are_not_masked_as_text_but_keys_still_are() -> None:
    redactor = Redactor(["ab"])
    assert redactor.redact("a tab") == "a tab"
    assert redactor.redact_obj({"password": "ab"}) == {"password": MASK}


def test_redact_obj_walks_nested_data() -> None:
    redactor = Redactor(["S3cr3t-value"])
    data = {
        "Authorization": "Basic xyz",
        "nested": [{"clientSecret": "y", "n": 1, "note": "pw S3cr3t-value", "ok": True}],
        "api-key": "k",
        "password": None,
        "tuple": ("S3cr3t-value", 2.5),
    }
    assert redactor.redact_obj(data) == {
        "Authorization": MASK,
        "nested": [{"clientSecret": MASK, "n": 1, "note": f"pw {MASK}", "ok": True}],
        "api-key": MASK,
        "password": None,
        "tuple": [MASK, 2.5],
    }


def test_redact_headers() -> None:
    assert redact_headers({"Authorization": "Bearer t0k3n-abc", "X-Api-Key": "k",
                           "Cookie": "s=1", "X-BW-REQUEST-ID": "id-1"}) == {
        "Authorization": MASK, "X-Api-Key": MASK, "Cookie": MASK, "X-BW-REQUEST-ID": "id-1"}


def test_from_config_collects_secret_values() -> None:
    config = {
        "sage": {"username": "ADMIN", "password": "pw-1234"},
        "basware": {"client_id": "cid", "client_secret": "cs-5678", "scopes": ["a", "b"]},
        "credentials": {"api_key": "key-9999"},
        "ledger_url": "postgresql://audit:db%2Fpw99@db.example/ledger",
        "start_date": "2024-01-01",
    }
    redactor = Redactor.from_config(config)
    assert redactor.secrets == {"pw-1234", "cs-5678", "key-9999", "db/pw99"}
    assert redactor.redact("postgresql://audit:db%2Fpw99@db") == f"postgresql://audit:{MASK}@db"


def test_secrets_added_at_run_time() -> None:
    redactor = Redactor()
    assert redactor.redact("token zq-fresh-123") == "token zq-fresh-123"
    redactor.add("zq-fresh-123", None, "")
    assert redactor.redact("token zq-fresh-123") == f"token {MASK}"


@given(
    before=st.text(max_size=30),
    secret=st.text(alphabet="abcXYZ019-_.!", min_size=4, max_size=20),
    after=st.text(max_size=30),
)
def test_an_embedded_secret_never_survives(before: str, secret: str, after: str) -> None:
    redacted = Redactor([secret]).redact(before + secret + after)
    assert secret not in redacted and secret.upper() not in redacted


def test_log_records_are_redacted_even_for_handlers_added_later() -> None:
    early = io.StringIO()
    root_handler = logging.StreamHandler(early)
    logging.getLogger().addHandler(root_handler)
    late = io.StringIO()
    try:
        install_log_redaction(["L0g-s3cret-value"])
        logger = logging.getLogger("mlc.test.redaction.late")
        logger.propagate = False
        handler = logging.StreamHandler(late)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)  # configured after the install, like the SDK does
        logger.warning("args: %s", "L0g-s3cret-value")
        logger.warning("f-string: L0g-s3cret-value")
        try:
            raise RuntimeError("boom L0g-s3cret-value")
        except RuntimeError:
            logger.exception("failed")
        logging.getLogger("mlc.test.redaction.root").error("root %r", {"pw": "L0g-s3cret-value"})
    finally:
        logging.getLogger().removeHandler(root_handler)
    text = late.getvalue() + early.getvalue()
    assert "L0g-s3cret-value" not in text
    assert "args: ***" in text and "RuntimeError: boom ***" in text and "root {'pw': '***'}" in text


def test_records_without_secrets_are_left_intact() -> None:
    """The SDK's formatters read `args` (metric points) and `exc_info` (JSON logs)."""
    redactor = install_log_redaction(["Cl34n-test-secret"])
    point = object()
    error = ValueError("nothing secret")
    clean = logging.LogRecord("x", logging.INFO, "f", 1, "METRIC: %s", (point,),
                              (ValueError, error, None))
    RedactingFilter(redactor).filter(clean)
    assert clean.msg == "METRIC: %s" and clean.args == (point,)
    assert clean.exc_info == (ValueError, error, None)


# -- precision: values of secret keys are masked, settings that merely mention one are not ----

SECRET_NAMES = ["password", "PASSWORD", "sage_password", "client_secret", "clientSecret",
                "access_token", "webhook_token", "refresh_token", "X-Api-Key", "api_key",
                "aws_secret_access_key", "passphrase", "dbPassword", "X-Amz-Signature"]
SETTING_NAMES = ["keep_password_case", "password_case_sensitive", "token_expiry_calls",
                 "token_url", "token_type", "passwordHint", "secret_rotation_days",
                 "tokens_url", "webhook_token_env"]


@given(name=st.sampled_from(SECRET_NAMES),
       value=st.text(alphabet="abcXYZ019-_.!+/", min_size=1, max_size=20),
       quote=st.sampled_from(["", '"', "'"]), separator=st.sampled_from(["=", ": ", ":", " = "]))
def test_values_of_secret_keys_are_masked_in_text(name: str, value: str, quote: str,
                                                  separator: str) -> None:
    text = f"config {quote}{name}{quote}{separator}{quote}{value}{quote} rest"
    redacted = Redactor().redact(text)
    assert redacted == f"config {quote}{name}{quote}{separator}{quote}{MASK}{quote} rest"


@given(name=st.sampled_from(SETTING_NAMES),
       value=st.sampled_from(["false", "True", "20", "3600", "https://login.example/token",
                              "Bearer", "none", "case-sensitive"]),
       quote=st.sampled_from(["", '"', "'"]), separator=st.sampled_from(["=", ": "]))
def test_settings_that_mention_a_secret_word_stay_readable(name: str, value: str, quote: str,
                                                           separator: str) -> None:
    text = f"{quote}{name}{quote}{separator}{quote}{value}{quote}"
    assert Redactor().redact(text) == text


def test_the_known_flaw_keep_password_case_is_readable_in_logs() -> None:
    redactor = Redactor(["Sandbox-Pass1"])
    line = ("target-sage300 config: {'username': 'WEBAPI', 'password': 'Sandbox-Pass1', "
            "'keep_password_case': False, 'token_expiry_calls': 20} keep_password_case: false")
    assert redactor.redact(line) == (
        "target-sage300 config: {'username': 'WEBAPI', 'password': '***', "
        "'keep_password_case': False, 'token_expiry_calls': 20} keep_password_case: false")


def test_redact_obj_masks_secret_keys_only() -> None:
    data = {"password": "p", "keep_password_case": False, "token_expiry_calls": 3,
            "token_url": "https://login.example/v1/tokens", "sage_password": "x",
            "webhook_token": "w", "passwordHint": "the usual", "verify_tls": True,
            "clientSecret": 12345678, "access_token": None, "auth": ("USER", "PW")}
    assert Redactor().redact_obj(data) == {
        "password": MASK, "keep_password_case": False, "token_expiry_calls": 3,
        "token_url": "https://login.example/v1/tokens", "sage_password": MASK,
        "webhook_token": MASK, "passwordHint": "the usual", "verify_tls": True,
        "clientSecret": MASK, "access_token": None, "auth": MASK}


def test_from_config_takes_only_values_of_secret_keys() -> None:
    config = {"token_url": "https://login.example/v1/tokens", "keep_password_case": True,
              "password_hint": "the usual", "webhook_token": "wh-token-1234",
              "basware": {"client_secret": "cs-5678", "token_expiry_calls": 20}}
    redactor = Redactor.from_config(config)
    assert redactor.secrets == {"wh-token-1234", "cs-5678"}
    assert redactor.redact("token_url https://login.example/v1/tokens") == (
        "token_url https://login.example/v1/tokens")


# Keys and text drawn so that secret words, planted secrets and credential shapes turn up often.
_SECRET = "Tr0ub4dor&3"
_WORDS = st.sampled_from(["VendorName", "Password", "api_key", "AccessKey", "Authorization",
                          "Cookie", "token", "Basic QWxhZGRpbjpvcGVu", "bearer abcdef123456",
                          "Capital Ltd", "SECRET", _SECRET, _SECRET.upper(), "N'ame \"q\"", "é"])
_TEXT = st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=3).map(" ".join)
_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), _TEXT),
                       lambda inner: st.one_of(
                           st.lists(inner, max_size=3),
                           st.dictionaries(st.one_of(_WORDS, _TEXT), inner, max_size=3)),
                       max_leaves=8)


@settings(max_examples=500)
@given(st.dictionaries(st.one_of(_WORDS, _TEXT), _VALUES, max_size=5))
def test_a_document_called_clean_is_one_redaction_leaves_unchanged(document: dict) -> None:
    # The ledger stores a payload's JSON as it is when json_is_clean says so, skipping the
    # walk: that must never keep something redact_obj would have masked.
    redactor = Redactor([_SECRET])
    text = json.dumps(document, sort_keys=True, ensure_ascii=False)
    if redactor.json_is_clean(text):
        assert redactor.redact_obj(document) == document
