"""`--tls-self-signed`'s development CA: a client that trusts `ca.pem` verifies the server certificate for the
local names, across restarts that reuse the CA; a folder it cannot use is refused with the reason."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from aural.runtime.server.dev_tls import DevCertificateError, DevCertificates, ensure_dev_certificates
from aural.runtime.server.run import tls_context


def handshake(files: DevCertificates, name: str, ca: Path | None = None) -> None:
    """A TLS handshake in memory between the runtime's server context and a client that trusts `ca` only
    (default: the folder's) and checks the certificate for `name`.

    Raises:
        ssl.SSLCertVerificationError: the client does not accept the server's certificate.
    """
    server_context = tls_context(str(files.cert), str(files.key))
    client_context = ssl.create_default_context(cafile=str(ca or files.ca))
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(to_server, to_client, server_side=True)
    client = client_context.wrap_bio(to_client, to_server, server_hostname=name)
    for _ in range(10):  # TLS 1.3 completes in two round trips
        waiting = 0
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                waiting += 1
        if not waiting:
            return
    raise AssertionError("the handshake did not complete")


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1", "aural.test"])
def test_the_certificate_verifies_for_the_local_names_and_the_host(tmp_path: Path, name: str) -> None:
    files = ensure_dev_certificates(tmp_path / "certs", "aural.test")
    handshake(files, name)


def test_a_name_the_certificate_does_not_hold_is_refused(tmp_path: Path) -> None:
    files = ensure_dev_certificates(tmp_path, "0.0.0.0")  # a wildcard host adds no name
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(files, "example.com")


def test_a_restart_reuses_the_ca_so_that_clients_keep_trusting_it(tmp_path: Path) -> None:
    first = ensure_dev_certificates(tmp_path)
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(first.ca.read_bytes())  # what a client was given after the first start
    cert = first.cert.read_bytes()
    again = ensure_dev_certificates(tmp_path)
    assert again.ca.read_bytes() == trusted.read_bytes() and again.cert.read_bytes() != cert, "new leaf, same CA"
    handshake(again, "localhost", ca=trusted)
    assert (first.key.stat().st_mode & 0o777, first.ca_key.stat().st_mode & 0o777) == (0o600, 0o600)


def test_another_ca_is_not_trusted(tmp_path: Path) -> None:
    ours, theirs = ensure_dev_certificates(tmp_path / "ours"), ensure_dev_certificates(tmp_path / "theirs")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(ours, "localhost", ca=theirs.ca)


def test_a_folder_with_half_a_ca_or_a_mismatched_key_is_refused(tmp_path: Path) -> None:
    files, other = ensure_dev_certificates(tmp_path / "a"), ensure_dev_certificates(tmp_path / "b")
    files.ca_key.write_bytes(other.ca_key.read_bytes())
    with pytest.raises(DevCertificateError, match=r"ca-key\.pem is not the key of ca\.pem"):
        ensure_dev_certificates(files.directory)
    files.ca_key.unlink()
    with pytest.raises(DevCertificateError, match=r"one of ca\.pem and ca-key\.pem but not the other"):
        ensure_dev_certificates(files.directory)
    files.ca_key.write_text("not a key")
    with pytest.raises(DevCertificateError, match="the CA is unreadable"):
        ensure_dev_certificates(files.directory)
