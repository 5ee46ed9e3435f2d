"""`fsg certs` and `common.tls` without a stack: what the certificates say (names, uses, signer), that keys
are private, that a second run keeps what is good and re-issues what is not, and that half a TLS
configuration refuses to start with a message naming files, never their contents."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from common.settings import REPO_ROOT, CommonSettings
from common.tls import TlsConfigError, load_tls
from devstack.certs import ensure_certs

SERVERS = ("auth", "billing", "generation", "edge", "postgres")


def _cert(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / f"{name}.crt").read_bytes())


def _names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def _uses(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _fsg_certs(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "devstack.cli", "certs", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_each_certificate_says_who_may_use_it_for_what(tmp_path: Path) -> None:
    made = ensure_certs(tmp_path)
    assert made == ["ca", "auth", "billing", "generation", "edge", "operator", "postgres"]
    ca = _cert(tmp_path, "ca")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for name in SERVERS:
        cert = _cert(tmp_path, name)
        cert.verify_directly_issued_by(ca)
        assert {"localhost", "127.0.0.1", "::1", name} <= _names(cert)
        assert ExtendedKeyUsageOID.SERVER_AUTH in _uses(cert)
    for name in ("auth", "billing", "generation", "edge", "operator"):
        assert ExtendedKeyUsageOID.CLIENT_AUTH in _uses(_cert(tmp_path, name))
    assert _uses(_cert(tmp_path, "operator")) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert _uses(_cert(tmp_path, "postgres")) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob("*.key")} == {
        f"{name}.key": 0o600 for name in made}


def test_a_second_run_keeps_what_is_good_and_reissues_what_is_not(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ensure_certs(tmp_path) == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # A leaf signed by someone else (another deployment's, copied in by mistake) is issued again.
    other = tmp_path / "other"
    ensure_certs(other)
    for suffix in (".crt", ".key"):
        (tmp_path / f"billing{suffix}").write_bytes((other / f"billing{suffix}").read_bytes())
    assert ensure_certs(tmp_path) == ["billing"]
    _cert(tmp_path, "billing").verify_directly_issued_by(_cert(tmp_path, "ca"))


def test_fsg_certs_adds_hostnames_and_refuses_unknown_services(tmp_path: Path) -> None:
    first = _fsg_certs(data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "made ca, auth" in first.stdout and str(tmp_path / "tls") in first.stdout
    more = _fsg_certs("--san", "billing=billing.internal", "--san", "10.0.0.7", data_dir=tmp_path)
    assert more.returncode == 0, more.stderr
    tls = tmp_path / "tls"
    assert {"billing.internal", "10.0.0.7"} <= _names(_cert(tls, "billing"))
    assert "10.0.0.7" in _names(_cert(tls, "auth")) and "billing.internal" not in _names(_cert(tls, "auth"))
    # An IP address goes in as one, not as a DNS name.
    san = _cert(tls, "auth").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.0.0.7") in san.get_values_for_type(x509.IPAddress)
    wrong = _fsg_certs("--san", "billling=x.internal", data_dir=tmp_path)
    assert wrong.returncode == 2 and "'billling' is not one of" in wrong.stderr


def _settings(**env: str) -> CommonSettings:
    return CommonSettings(**env)  # type: ignore[arg-type]


def test_half_a_configuration_refuses_to_start(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    assert load_tls(_settings(), "auth") is None  # nothing set: plaintext
    with pytest.raises(TlsConfigError, match="FSG_TLS_CERT and FSG_TLS_KEY go together"):
        load_tls(_settings(FSG_TLS_CERT=str(tmp_path / "auth.crt")), "auth")
    with pytest.raises(TlsConfigError, match="set FSG_TLS_CERT, FSG_TLS_KEY too"):
        load_tls(_settings(FSG_TLS_CA=str(tmp_path / "ca.crt")), "auth")
    with pytest.raises(TlsConfigError, match=r"nobody\.crt does not exist"):
        load_tls(_settings(FSG_TLS_DIR=str(tmp_path)), "nobody")
    key = (tmp_path / "billing.key").read_text()
    with pytest.raises(TlsConfigError, match="do not belong together") as mismatch:
        load_tls(_settings(FSG_TLS_DIR=str(tmp_path), FSG_TLS_CERT=str(tmp_path / "auth.crt"),
                           FSG_TLS_KEY=str(tmp_path / "billing.key")), "auth")
    assert key not in str(mismatch.value) and "PRIVATE" not in str(mismatch.value)
    loaded = load_tls(_settings(FSG_TLS_DIR=str(tmp_path)), "auth")
    assert loaded is not None and "PRIVATE" not in repr(loaded)


def test_a_process_with_half_a_configuration_exits_with_one_line(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FSG_TLS")},
           "FSG_SERVICE_TOKEN": "x" * 40, "FSG_TLS_DIR": str(tmp_path / "missing"),
           "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run([sys.executable, "-m", "services.auth.server"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "missing/ca.crt does not exist" in result.stderr and "Traceback" not in result.stderr
