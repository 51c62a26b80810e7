"""TLS failures reach the caller as SslAuthenticationError carrying the SSL library's reason."""

from __future__ import annotations

import ssl

import pytest

from aioshare.admin import ShareAdmin
from aioshare.protocol.errors import KafkaError, SslAuthenticationError

from .conftest import TlsContexts
from .fakes import FakeBroker


async def test_untrusted_certificate_names_the_reason(tls: TlsContexts) -> None:
    async with FakeBroker(ssl_context=tls.server) as broker:
        with pytest.raises(SslAuthenticationError) as info:
            async with ShareAdmin(
                f"127.0.0.1:{broker.port}", ssl=ssl.create_default_context(), request_timeout=5
            ):
                pass
    text = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in text, text
    assert f"127.0.0.1:{broker.port}" in text


async def test_tls_to_a_plaintext_listener_is_not_an_empty_error(tls: TlsContexts) -> None:
    async with FakeBroker() as broker:
        with pytest.raises(KafkaError) as info:
            async with ShareAdmin(f"127.0.0.1:{broker.port}", ssl=tls.client, request_timeout=1):
                pass
    text = str(info.value)
    assert f"127.0.0.1:{broker.port}" in text, text
    assert not text.rstrip().endswith(":"), text
    assert "()" not in text, text
