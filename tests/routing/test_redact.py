"""The one redaction path (dialwhom.routing.redact): URLs, secrets, control characters, codes."""

from __future__ import annotations

import logging

import pytest

from dialwhom.routing import redact
from dialwhom.routing.redact import error_code, outgoing, printable, remember_secret, safe_url, scrub


@pytest.mark.parametrize("url, expected", [
    ("http://user:pass@crm.example/owner?phone=%2B919876543210", "http://***@crm.example/owner"),
    ("https://crm.example/v1/find/%2B919876543210?token=abc#frag", "https://crm.example/v1/find/+91*******210"),
    ("redis://:hunter2hunter2@10.0.0.5:6379/0", "redis://***@10.0.0.5:6379/0"),
    ("", "?"),
])
def test_safe_url_drops_credentials_query_and_masks_path_numbers(url, expected):
    assert safe_url(url) == expected


def test_scrub_makes_urls_safe_masks_numbers_and_secrets_and_keeps_one_line():
    remember_secret("pat-na1-0123456789-echoed")
    text = scrub("GET http://u:pw@h/x?q=1 failed\nfor +91 98765 43210 with token pat-na1-0123456789-echoed")
    assert "\n" not in text and "pw@" not in text and "q=1" not in text
    assert "98765 43210" not in text and "pat-na1-0123456789-echoed" not in text
    assert "pa***" in text  # masked, still tells two tokens apart


def test_registered_secrets_are_masked_in_their_url_encoded_form_too():
    remember_secret("s3cr3t/with+plus=")
    assert "s3cr3t" not in outgoing("body: s3cr3t%2Fwith%2Bplus%3D and s3cr3t/with+plus=")


def test_short_values_are_not_registered_as_secrets():
    remember_secret("abc")  # too short to mask everywhere: 'abc' would vanish from every log line
    assert outgoing("abcdef") == "abcdef"


@pytest.mark.parametrize("value", ["CA1\nINFO forged", "CA1\r\x00\x1b[31m", "\x7f\x85"])
def test_printable_escapes_every_control_character(value):
    out = printable(value)
    assert out.isprintable() and "\\x" in out


def test_error_code_quotes_codes_and_never_free_text():
    assert error_code("INVALID_AUTHENTICATION") == "INVALID_AUTHENTICATION"
    assert error_code("invalid_client") == "invalid_client"
    assert error_code("Authentication credentials pat-na1-xyz are invalid") == "(message withheld, 50 chars)"
    assert error_code(None) == "-"
    assert error_code("9876543210") == "*******210"  # a 'code' that is a number is still masked


def test_log_records_from_any_logger_pass_through_outgoing(caplog):
    redact.install_log_redaction()
    remember_secret("client-secret-echoed-0001")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").debug("GET %s client-secret-echoed-0001\nforged", "https://a:b@h/p?phone=9876543210")
    (record,) = caplog.records
    message = record.getMessage()
    assert "client-secret-echoed-0001" not in message and "9876543210" not in message
    assert "\n" not in message and "a:b@" not in message


def test_remembered_safe_texts_are_made_again_when_a_secret_is_registered():
    # header_value and scrub remember their results (a warm caller's header repeats); a
    # secret registered later (a reload adds a connector) must be masked in those texts too.
    from dialwhom.routing.redact import header_value

    text = "path=error; crm[caller]=auth 3ms (echoed tok-reload-0000-later)"
    assert "tok-reload-0000-later" in header_value(text)
    assert "tok-reload-0000-later" in scrub(text)
    remember_secret("tok-reload-0000-later")
    assert "tok-reload-0000-later" not in header_value(text)
    assert "tok-reload-0000-later" not in scrub(text)
    assert header_value(text).startswith("path=error; crm[caller]=auth 3ms (echoed to***")
