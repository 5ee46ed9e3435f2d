"""Internal TLS: the one place that decides, from settings, whether a process's gRPC is plaintext or mutual
TLS, and with which certificate.

TLS is on when FSG_TLS_DIR, FSG_TLS_CA, FSG_TLS_CERT or FSG_TLS_KEY is set, and off when none is:

- FSG_TLS_DIR is a directory laid out as `fsg certs` makes it (`ca.crt`, and `<identity>.crt`/`.key` for
  each process): a process takes the CA and its own pair by its identity (`auth`, `billing`, `generation`,
  `edge`, `operator`). This is what `make run` hands every process.
- FSG_TLS_CA / FSG_TLS_CERT / FSG_TLS_KEY name the files one by one (a container given only its own
  certificate and the CA) and win over the directory's.

Mutual: a server demands a client certificate signed by the CA (`require_client_auth`), and a client
presents its own and checks that the server's certificate, signed by the same CA, names the host it dialled.
Half a configuration (a certificate without its key, a directory without this identity's files) refuses to
start with one line naming what is missing; a process never falls back to plaintext by itself.

Health: `grpc.health.v1.Health` is served on the same port, so with TLS on a probe needs a client
certificate too (`probe_channel`; `python -m devstack.healthcheck` uses the process's own). No plaintext
side port: anything that can reach a service must prove it is one of ours, the probe included.

Certificates are read once at start: a renewed certificate is taken up by restarting the process (a rolling
restart), as with the service token.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from common.settings import CommonSettings

log = logging.getLogger(__name__)

CA_NAME = "ca"


def cert_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.crt"


def key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.key"


class TlsConfigError(RuntimeError):
    """The TLS configuration is incomplete or unusable; the process must not start."""


@dataclass(frozen=True)
class TlsFiles:
    """Where a process's CA, certificate and key are."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, repr=False)
class GrpcTls:
    """One process's TLS material, read once: the CA it trusts and the pair it presents."""

    identity: str
    files: TlsFiles
    ca: bytes
    cert: bytes
    key: bytes

    def __repr__(self) -> str:  # never the key in a traceback or a log line
        return f"GrpcTls(identity={self.identity!r}, cert={str(self.files.cert)!r}, key=<redacted>)"

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with our certificate; refuse any client without a certificate signed by the CA."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Present our certificate; accept only a server whose certificate the CA signed for the name dialled."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def probe_channel(target: str, tls: GrpcTls | None) -> grpc.Channel:
    """A blocking channel for health probes and scripts: mutual TLS with `tls`, plaintext without."""
    if tls is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, tls.channel_credentials())


def tls_files(settings: CommonSettings, identity: str) -> TlsFiles | None:
    """The files `identity` uses, or None when TLS is off. Raises `TlsConfigError` on half a configuration."""
    directory = settings.tls_dir
    given = {"FSG_TLS_CA": settings.tls_ca, "FSG_TLS_CERT": settings.tls_cert, "FSG_TLS_KEY": settings.tls_key}
    if directory is None and not any(given.values()):
        return None
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise TlsConfigError("FSG_TLS_CERT and FSG_TLS_KEY go together: set both (or neither, with FSG_TLS_DIR)")
    if directory is None and not all(given.values()):
        missing = ", ".join(name for name, value in given.items() if value is None)
        raise TlsConfigError(f"TLS is half configured: set {missing} too, or FSG_TLS_DIR (made by `fsg certs`)")
    if directory is None:
        assert settings.tls_ca is not None and settings.tls_cert is not None and settings.tls_key is not None
        files = TlsFiles(settings.tls_ca, settings.tls_cert, settings.tls_key)
    else:
        files = TlsFiles(ca=settings.tls_ca or cert_path(directory, CA_NAME),
                         cert=settings.tls_cert or cert_path(directory, identity),
                         key=settings.tls_key or key_path(directory, identity))
    for path in (files.ca, files.cert, files.key):
        if not path.is_file():
            raise TlsConfigError(f"TLS file {path} does not exist (make it with `fsg certs --dir {path.parent}`)")
    return files


def load_tls(settings: CommonSettings, identity: str) -> GrpcTls | None:
    """`identity`'s TLS material, checked (the key matches the certificate, the CA parses), or None when
    TLS is off. Raises `TlsConfigError` with a message that names files, never their contents."""
    files = tls_files(settings, identity)
    if files is None:
        return None
    check = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        check.load_verify_locations(cafile=str(files.ca))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"FSG_TLS CA {files.ca} is not a usable certificate: {type(exc).__name__}") from None
    try:
        check.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"TLS certificate {files.cert} and key {files.key} are unusable or do not belong together: "
            f"{type(exc).__name__}"
        ) from None
    return GrpcTls(identity, files, files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes())


def tls_or_exit(settings: CommonSettings, identity: str) -> GrpcTls | None:
    """`load_tls` for a process's start-up: a configuration error ends it with one clear line."""
    try:
        tls = load_tls(settings, identity)
    except TlsConfigError as exc:
        log.critical("%s", exc)
        raise SystemExit(2) from None
    if tls is None:
        log.info("internal gRPC is plaintext (no FSG_TLS_DIR / FSG_TLS_CA, FSG_TLS_CERT, FSG_TLS_KEY)")
    return tls
