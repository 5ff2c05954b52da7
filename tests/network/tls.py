"""A throw-away certificate authority for HTTPS tests, generated with ``cryptography``.

Why: the provider must work against endpoints whose certificate is signed by a private CA (a
corporate proxy, an internal mirror). A CA made on the fly lets a test prove both sides: calls
succeed when the client is told about the CA and fail when it is not, without any file checked
in that could expire or leak.

:func:`make_test_ca` writes PEM files into a folder: a self-signed CA, a server certificate for
``127.0.0.1`` / ``localhost`` (SubjectAlternativeName: IP 127.0.0.1, DNS localhost) and a client
certificate for mutual TLS, all signed by the CA. Keys are P-256 EC keys: fast to make, accepted by
every OpenSSL. The extensions follow what strict verifiers (Python 3.13's ``VERIFY_X509_STRICT``)
require: critical BasicConstraints, KeyUsage, Subject/Authority Key Identifiers.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pathlib import Path

#: How long the certificates stay valid; they are remade every test session.
VALIDITY = datetime.timedelta(days=7)
#: Back-dating absorbs a clock that is slightly behind the signer's.
BACKDATE = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class TestCA:
    """Paths of the PEM files made by :func:`make_test_ca`, plus SSL-context helpers."""

    __test__ = False  # not a test class, despite the name

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server context with the server certificate; optionally demanding a client certificate
        signed by this CA (mutual TLS)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(cafile=self.ca_cert)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        """A client context trusting only this CA (hostname checks on); optionally presenting the
        client certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))
        if with_client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "airflow-provider-lotimage tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("LotImage test CA")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Unencrypted PKCS#8, readable by the owner only (created 0600 before the key is written)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)


def make_test_ca(directory: Path) -> TestCA:
    """Generate the CA, server and client certificates into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca()
    server_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    server_key, server_cert = _make_leaf(
        ca_key, ca_cert, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, server_names
    )
    client_key, client_cert = _make_leaf(
        ca_key, ca_cert, "lotimage-test-client", ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    ca = TestCA(
        directory=directory,
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    _write_cert(ca.ca_cert, ca_cert)
    _write_key(ca.ca_key, ca_key)
    _write_cert(ca.server_cert, server_cert)
    _write_key(ca.server_key, server_key)
    _write_cert(ca.client_cert, client_cert)
    _write_key(ca.client_key, client_key)
    return ca
