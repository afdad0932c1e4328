"""The edge agent's identity: a token and a self-signed certificate the centre pins.

An edge site talks to the rest over links that cross networks nobody controls, so the
agent's control port is TLS everywhere but loopback, and the central side trusts exactly
one certificate for it (the one :func:`init_agent_dir` wrote), not a CA: there is no PKI
to run for a fleet of small machines, and a pinned certificate cannot be impersonated by
anyone who can obtain a certificate from some CA. The token proves the caller to the
agent; the pinned certificate proves the agent to the caller, before the token is sent.

>>> import tempfile
>>> ident = init_agent_dir(tempfile.mkdtemp(), hosts=["127.0.0.1"])
>>> ident.fingerprint.startswith("sha256:"), len(ident.token) > 30
(True, True)
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError
from ...fileio import atomic_write_bytes, atomic_write_text

#: The environment variable holding the agent's token (central side and agent).
TOKEN_ENV = "HYBRIDNB_EDGE_TOKEN"
CERT_FILE = "tls/agent.pem"
KEY_FILE = "tls/agent.key"
TOKEN_FILE = "token"


@dataclass(frozen=True)
class AgentIdentity:
    """Paths of an agent's certificate, key and token file, and the token itself."""

    cert: Path
    key: Path
    token_file: Path
    token: str

    @property
    def fingerprint(self) -> str:
        """``sha256:HEX`` of the certificate (DER), as ``sites.X.edge.agent.fingerprint``."""
        return fingerprint(self.cert.read_text())

    def __repr__(self) -> str:  # never the token
        return f"AgentIdentity(cert={str(self.cert)!r}, {self.fingerprint[:19]}…)"


def fingerprint(pem: str) -> str:
    """``sha256:HEX`` of a PEM certificate's DER bytes.

    >>> import tempfile
    >>> fingerprint(init_agent_dir(tempfile.mkdtemp()).cert.read_text())[:7]
    'sha256:'
    """
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
    except ValueError as exc:
        raise UsageError(f"not a PEM certificate: {exc}") from None
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _self_signed(hosts: Sequence[str], name: str) -> tuple[bytes, bytes]:
    """A P-256 key and a 10-year self-signed certificate naming ``hosts`` (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=3650))
               # Its own trust anchor: the centre loads exactly this certificate as the
               # only CA for the agent, which OpenSSL accepts for a self-signed CA cert.
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, content_commitment=False,
                   key_encipherment=False, data_encipherment=False, key_agreement=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def init_agent_dir(state_dir: str | os.PathLike[str], *, hosts: Sequence[str] = (),
                   name: str = "hybridnb-edge-agent") -> AgentIdentity:
    """Make (once) the agent's key, certificate and token under ``state_dir``.

    Idempotent: what exists is kept, so the fingerprint the centre pinned stays valid.
    The key and the token are mode 0600. ``hosts`` go into the certificate's names (the
    pin does not depend on them).
    """
    root = Path(state_dir)
    cert, key, token_file = root / CERT_FILE, root / KEY_FILE, root / TOKEN_FILE
    if not (cert.is_file() and key.is_file()):
        key_pem, cert_pem = _self_signed(list(hosts), name)
        (root / "tls").mkdir(parents=True, exist_ok=True)
        os.chmod(root / "tls", 0o700)
        atomic_write_bytes(key, key_pem, mode=0o600)
        atomic_write_bytes(cert, cert_pem, mode=0o644)
    if not token_file.is_file():
        atomic_write_text(token_file, secrets.token_urlsafe(32) + "\n", mode=0o600)
    return AgentIdentity(cert, key, token_file, read_token(token_file))


def read_token(path: str | os.PathLike[str]) -> str:
    """The token in a file (whitespace stripped); a :class:`UsageError` naming the file.

    A file others may read is refused: the token lets its holder replace the model.
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"token file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise UsageError(f"token file {path} is readable by others (mode "
                         f"{mode & 0o777:o}): chmod 600 {path}")
    if not text:
        raise UsageError(f"token file {path} is empty")
    return text


def client_context(cert_pem: str, expected: str | None = None) -> ssl.SSLContext:
    """A TLS client context trusting only ``cert_pem`` (the agent's own certificate).

    Host names are not checked: the trust is the pinned certificate itself (an edge
    machine's address often changes behind NAT), and only the agent holds its key.
    ``expected`` (``sha256:HEX``) is compared with the certificate first.

    >>> import tempfile
    >>> pem = init_agent_dir(tempfile.mkdtemp()).cert.read_text()
    >>> client_context(pem).verify_mode.name
    'CERT_REQUIRED'
    """
    got = fingerprint(cert_pem)
    if expected is not None and got != expected:
        raise UsageError(f"the agent certificate's fingerprint is {got}, but the "
                         f"configuration pins {expected}: use the certificate the agent "
                         "wrote ('hybridnb edge init' prints it)")
    ctx = ssl.create_default_context(cadata=cert_pem)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
