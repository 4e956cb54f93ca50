"""A development certificate authority: `aural serve --tls-self-signed DIR` serves `wss://` on this machine
without a public certificate.

DIR keeps a local CA (`ca.pem`, `ca-key.pem`), made once and reused on every later start so that clients
keep trusting it, and a server certificate (`cert.pem`, `key.pem`) that the CA signs anew at each start for
`localhost`, `127.0.0.1`, `::1` and the host served on. Clients trust `ca.pem`: Node with
`NODE_EXTRA_CA_CERTS=DIR/ca.pem`, Python with `ssl.create_default_context(cafile=DIR/ca.pem)`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 365
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = {"", "0.0.0.0", "::"}


class DevCertificateError(Exception):
    """DIR holds a CA that cannot be used (a certificate without its key, or files that are not PEM)."""


@dataclass(frozen=True)
class DevCertificates:
    """The files of a development CA folder."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate that clients trust."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert(self) -> Path:
        """The server certificate, signed by the CA."""
        return self.directory / "cert.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"


def ensure_dev_certificates(directory: Path, host: str = "localhost") -> DevCertificates:
    """Make DIR's CA if it has none (else load it) and sign a fresh server certificate with it.

    Args:
        directory: the folder, created if missing.
        host: the name or address served on, added to the local names (a wildcard such as 0.0.0.0 adds nothing).

    Raises:
        DevCertificateError: DIR holds a CA certificate without its key (or the reverse), or an unreadable one.
        OSError: DIR cannot be created or written.
    """
    files = DevCertificates(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _load_ca(files) if files.ca.exists() or files.ca_key.exists() else _new_ca(files)
    key = ec.generate_private_key(ec.SECP256R1())
    names = dict.fromkeys((*LOCAL_NAMES, *(() if host in _WILDCARDS else (host,))))
    cert = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_cert.subject, key, CERT_DAYS)
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _private_pem(key), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def _load_ca(files: DevCertificates) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not (files.ca.exists() and files.ca_key.exists()):
        raise DevCertificateError(f"{files.directory} has one of ca.pem and ca-key.pem but not the other")
    try:
        cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise DevCertificateError(f"{files.directory}: the CA is unreadable ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise DevCertificateError(f"{files.directory}: ca-key.pem is not the key of ca.pem")
    return cert, key


def _new_ca(files: DevCertificates) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Aural development CA")])
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        _builder(name, name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(files.ca_key, _private_pem(key), private=True)
    _write(files.ca, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    """A certificate valid from a minute ago (clocks differ a little) for `days`."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write a PEM file; a private key is readable by its owner only, from its creation on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
