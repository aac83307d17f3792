"""Redaction of URLs, headers and error text for HTTP tasks (pure, no server)."""

from __future__ import annotations

import pytest

from durable.dag.web import redact_headers, redact_text, redact_url


@pytest.mark.parametrize("name", ["token", "access_token", "API_KEY", "apikey", "key",
                                  "x-api-key", "client_secret", "password", "passwd", "pwd",
                                  "Signature", "X-Amz-Signature", "X-Amz-Credential", "sig",
                                  "auth", "session_id", "private_token"])
def test_secret_looking_query_values_are_masked(name: str) -> None:
    assert redact_url(f"https://h.example/p?page=2&{name}=s3cr3t") == \
        f"https://h.example/p?page=2&{name}=***"


@pytest.mark.parametrize("name", ["page", "monkey", "keyword", "design", "q", "limit"])
def test_ordinary_query_values_are_kept(name: str) -> None:
    url = f"https://h.example/p?{name}=visible"
    assert redact_url(url) == url


def test_userinfo_is_masked_and_the_host_kept() -> None:
    assert redact_url("http://alice:pw@h.example:81/x") == "http://***@h.example:81/x"
    assert redact_url("http://token@h.example/x") == "http://***@h.example/x"


def test_credential_headers_are_masked() -> None:
    shown = redact_headers({"Authorization": "Bearer t", "cookie": "a=b", "Set-Cookie": "s=1",
                            "Accept": "text/plain"})
    assert shown == {"Authorization": "***", "cookie": "***", "Set-Cookie": "***",
                     "Accept": "text/plain"}


def test_text_has_its_urls_redacted_and_known_secret_values_masked() -> None:
    text = "GET https://u:p@h.example/x?token=abc failed: server said Bearer-value zyx987"
    assert redact_text(text, ["zyx987", "ab"]) == \
        "GET https://***@h.example/x?token=*** failed: server said Bearer-value ***"
