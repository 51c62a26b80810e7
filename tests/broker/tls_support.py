"""Test certificates made by the ``openssl`` binary: a CA, the broker's PEM key store, client certs.

The same recipe as tests/realkafka/test_security_real_kafka.py (which real Kafka reads): P-256
keys, PKCS#8 unencrypted, the broker's key store one PEM file holding its key then its chain.
``make_pki`` skips the calling test when openssl is missing (fails it under CI).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from aioshare.testing.kafka.requirement import in_ci

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path  # signed the broker's and alice's certificates
    other_ca: Path  # signed mallory's certificate and nothing else
    broker_keystore: Path  # Kafka's PEM key store: the broker's key, then its chain
    alice_cert: Path
    alice_key: Path
    mallory_cert: Path
    mallory_key: Path

    def client_context(self, *, cert: str | None = None) -> ssl.SSLContext:
        """Trusts our CA; presents alice's or mallory's certificate when asked."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert == "alice":
            context.load_cert_chain(str(self.alice_cert), str(self.alice_key))
        elif cert == "mallory":
            context.load_cert_chain(str(self.mallory_cert), str(self.mallory_key))
        return context


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        if in_ci():
            pytest.fail("the TLS tests need the openssl binary", pytrace=False)
        pytest.skip("the TLS tests need the openssl binary")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for name in ("ca", "other-ca"):
        _openssl(
            directory,
            *("req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *new_key),
            *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2"),
            *("-subj", f"/CN=aioshare test {name}"),
        )
    for serial, (name, cn, extensions, ca) in enumerate(
        [
            ("broker", "localhost", "server", "ca"),
            ("alice", "alice", "client", "ca"),
            ("mallory", "mallory", "client", "other-ca"),
        ],
        start=1,
    ):
        _openssl(
            directory,
            *("req", "-new", "-config", "openssl.cnf", *new_key),
            *("-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"),
        )
        _openssl(
            directory,
            *("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key"),
            *("-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem"),
            *("-extfile", "openssl.cnf", "-extensions", extensions),
        )
    (directory / "broker-keystore.pem").write_text(
        "".join((directory / f).read_text() for f in ("broker.key", "broker.pem", "ca.pem"))
    )
    return Pki(
        directory=directory,
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        broker_keystore=directory / "broker-keystore.pem",
        alice_cert=directory / "alice.pem",
        alice_key=directory / "alice.key",
        mallory_cert=directory / "mallory.pem",
        mallory_key=directory / "mallory.key",
    )
