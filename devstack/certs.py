"""`fsg certs`: the deployment's own certificate authority and one certificate per process, for mutual TLS
between the edge and the services, and for PostgreSQL.

Layout of the directory (DATA_DIR/tls by default), which `common.tls` reads by identity:

    ca.crt, ca.key                 the CA (the key signs; it is never handed to a process)
    auth|billing|generation.crt    server *and* client: each serves gRPC, and billing calls auth with its own
    edge.crt                       client (gRPC to the services) and server (HTTPS, EDGE_TLS_CERT, locally)
    operator.crt                   client only: the operator CLIs (`fsg-billing import|export`) and the tests
    postgres.crt                   server only: the embedded PostgreSQL (ssl=on)

each with its `.key` beside it. Keys are ECDSA P-256 (a handshake costs a fraction of RSA-2048's), written
with mode 0600 from the start. Server certificates name `localhost`, 127.0.0.1 and ::1, the service's own
name (`auth`, as docker-compose calls it) and any extra hostnames, since clients verify the name they dialled.

Idempotent: what exists and is still good is kept, so `make run` can call this on every start the way it
keeps the service token. A leaf is issued again when it is missing, was not signed by the current CA, lacks a
requested name, or expires within RENEW_BEFORE.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.tls import CA_NAME, cert_path, key_path

CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=397)
#: A leaf this close to its end is issued again by the next `fsg certs` (or `make run`).
RENEW_BEFORE = dt.timedelta(days=30)
#: Names every server certificate carries: what a process on the same machine dials.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Leaf:
    """One process's certificate: who it is and what it may do (server, client or both)."""

    name: str
    server: bool
    client: bool


#: Every certificate `fsg certs` makes, in the order it makes them.
LEAVES: tuple[Leaf, ...] = (
    Leaf("auth", server=True, client=True),
    Leaf("billing", server=True, client=True),
    Leaf("generation", server=True, client=True),
    Leaf("edge", server=True, client=True),
    Leaf("operator", server=False, client=True),
    Leaf("postgres", server=True, client=False),
)
LEAF_NAMES = tuple(leaf.name for leaf in LEAVES)


def ensure_certs(directory: Path, hostnames: Mapping[str, Sequence[str]] | None = None, *,
                 force: bool = False) -> list[str]:
    """Make the CA and every leaf under `directory` unless present and good; return what was (re)made.

    `hostnames` maps a leaf name (or "*" for every server certificate) to extra DNS names or IP addresses.
    `force` makes a new CA and new leaves (every process must then be restarted to trust the new CA).
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # certificates are public; keys are 0600 on their own
    made: list[str] = []
    ca_key, ca_cert = (None, None) if force else _read_pair(directory, CA_NAME)
    if ca_key is None or ca_cert is None or _expiring(ca_cert):
        ca_key, ca_cert = _new_ca()
        _write_pair(directory, CA_NAME, ca_key, ca_cert)
        made.append(CA_NAME)
        force = True  # leaves of the old CA would no longer verify
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    extra = hostnames or {}
    for leaf in LEAVES:
        names = _names(leaf, [*extra.get("*", ()), *extra.get(leaf.name, ())]) if leaf.server else []
        key, cert = (None, None) if force else _read_pair(directory, leaf.name)
        if key is None or cert is None or not _still_good(cert, ca_cert, names):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(leaf, names, key, ca_key, ca_cert)
            _write_pair(directory, leaf.name, key, cert)
            made.append(leaf.name)
    return made


def parse_hostnames(values: Iterable[str]) -> dict[str, list[str]]:
    """`--san NAME` (every server certificate) or `--san SERVICE=NAME` (that one) → {"*" or SERVICE: names}."""
    out: dict[str, list[str]] = {}
    for value in values:
        target, _, name = value.rpartition("=")
        target = target or "*"
        if target != "*" and target not in LEAF_NAMES:
            raise ValueError(f"--san {value}: {target!r} is not one of {', '.join(LEAF_NAMES)}")
        if not name:
            raise ValueError(f"--san {value}: no name given")
        out.setdefault(target, []).append(name)
    return out


# -- internals -------------------------------------------------------------------------------------------

def _names(leaf: Leaf, extra: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*LOCAL_NAMES, leaf.name, *extra]))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Film Script Generator"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Film Script Generator deployment CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(leaf: Leaf, names: Sequence[str], key: ec.EllipticCurvePrivateKey,
           ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> x509.Certificate:
    usages = [*([ExtendedKeyUsageOID.SERVER_AUTH] if leaf.server else []),
              *([ExtendedKeyUsageOID.CLIENT_AUTH] if leaf.client else [])]
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Film Script Generator"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, f"fsg-{leaf.name}")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _expiring(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() < RENEW_BEFORE


def _still_good(cert: x509.Certificate, ca_cert: x509.Certificate, names: Sequence[str]) -> bool:
    """Signed by this CA, not about to expire, and naming at least `names`."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if _expiring(cert):
        return False
    if not names:
        return True
    try:
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return all(_general_name(name) in have for name in names)


def _read_pair(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey | None, x509.Certificate | None]:
    key_file, cert_file = key_path(directory, name), cert_path(directory, name)
    if not (key_file.exists() and cert_file.exists()):
        return None, None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError:  # damaged: make it again
        return None, None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None, None
    return key, cert


def _write_pair(directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    """The key first (0600 from its creation, never briefly readable), then the certificate; each replaced
    atomically, so a process starting meanwhile reads the old pair or the new, never half a file."""
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_atomic(key_path(directory, name), key_pem, 0o600)
    _write_atomic(cert_path(directory, name), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    tmp.chmod(mode)  # whatever the umask took away from the certificate's 0644
    tmp.replace(path)

