"""Mutual TLS in the deployment files: each process is given its own identity and no other's, by the TLS
variables common/tls.py reads; the server certificates `fsg certs` makes for them name the hosts the clients
dial (a client checks that name, so a missing one is a refused handshake in production); the repository holds
no private key.

The certificates are real: made by the `fsg certs` command an operator runs (for Kubernetes into each overlay's
secrets/tls, which kustomize turns into the Secrets checked here; for compose with the `--san` arguments of
its `certs` service), and read back with `cryptography`.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import shlex
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.settings import REPO_ROOT, CommonSettings
from common.tls import load_tls
from tests.deploy.manifests import (
    COMPOSE_TOOLS,
    GRPC_PROCESSES,
    OVERLAYS,
    compose,
    compose_env,
    container_env,
    fsg_certs,
    process_of,
    workloads,
)

Objects = list[dict[str, Any]]
IDENTITIES = GRPC_PROCESSES
TLS_FILES = {"FSG_TLS_CA": "ca.crt", "FSG_TLS_CERT": "tls.crt", "FSG_TLS_KEY": "tls.key"}
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for (its subjectAltName: what TLS clients check)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _dialled_host(target: str) -> str:
    """The host of a gRPC target (`dns:///auth:50061`, `dns:auth:50061` or `auth:50061`): the name the client
    checks in the server's certificate."""
    for prefix in ("dns:///", "dns:"):
        target = target.removeprefix(prefix)
    host, _, _port = target.rpartition(":")
    return host.strip("[]")


# -- Kubernetes ---------------------------------------------------------------------------------------------

def _secret_files(secret: dict[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}


def _tls_mount(obj: dict[str, Any], template: dict[str, Any], secrets: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, Any], str, dict[str, bytes]] | None:
    """(container, mount path, the Secret's files) of the one TLS Secret a workload mounts, or None."""
    spec = template["spec"]
    tls_volumes = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", [])
                   if "secret" in v and "tls.crt" in secrets[v["secret"]["secretName"]].get("data", {})}
    if not tls_volumes:
        return None
    assert len(tls_volumes) == 1, f"{obj['metadata']['name']} mounts several certificate Secrets: {tls_volumes}"
    ((volume, secret_name),) = tls_volumes.items()
    (container,) = spec["containers"]
    (mount,) = [m for m in container.get("volumeMounts", []) if m["name"] == volume]
    assert mount.get("readOnly") is True, f"{obj['metadata']['name']}: the certificate Secret is mounted writable"
    return container, mount["mountPath"], _secret_files(secrets[secret_name])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_mounts_its_own_identity_and_no_other(rendered: dict[str, Objects], overlay: str) -> None:
    """Each gRPC process mounts exactly one certificate Secret, read-only, holding the CA and *its own* pair
    (the certificate's common name says whose: `fsg-<identity>`), and points FSG_TLS_CA/CERT/KEY at those
    files. The CA's key is in no Secret. The bootstrap Job, which speaks no gRPC, mounts none."""
    objects = rendered[overlay]
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    seen = set()
    for obj, template in workloads(objects):
        (container,) = template["spec"]["containers"]
        if tuple(container.get("command", ())) == ("fsg", "bootstrap") or "postgres" in str(container["image"]):
            assert _tls_mount(obj, template, secrets) is None, f"{obj['metadata']['name']} needs no certificate"
            continue
        identity, _ = process_of(container["command"])
        found = _tls_mount(obj, template, secrets)
        assert found is not None, f"{overlay}: {identity} mounts no certificate Secret"
        _, path, files = found
        assert set(files) == {"ca.crt", "tls.crt", "tls.key"}, f"{identity}'s Secret holds {sorted(files)}"
        cert = x509.load_pem_x509_certificate(files["tls.crt"])
        assert _common_name(cert) == f"fsg-{identity}", f"{overlay}: {identity} mounts {_common_name(cert)}'s pair"
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(files["ca.crt"]))
        env = container_env(container)
        for name, file in TLS_FILES.items():
            value = env.get(name, {}).get("value")
            assert value == f"{path}/{file}", f"{overlay}: {identity} {name}={value}, not the mounted {file}"
        seen.add(identity)
    assert seen == set(IDENTITIES), seen
    for name, secret in secrets.items():
        for key, data in _secret_files(secret).items():
            if PRIVATE_KEY.search(data):
                assert key == "tls.key", f"{overlay}: Secret {name} carries a private key as {key} (the CA's?)"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_server_certificate_names_what_its_clients_dial(rendered: dict[str, Objects], overlay: str) -> None:
    """For every *_ADDR a process is given, the certificate in the Secret of the Deployment behind that
    Service names the host dialled and is signed by the CA the client trusts; the readiness probe's
    127.0.0.1 is in it too."""
    objects = rendered[overlay]
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    identity_files: dict[str, dict[str, bytes]] = {}
    dialled: list[tuple[str, str, str]] = []  # (client, host, server)
    for obj, template in workloads(objects):
        found = _tls_mount(obj, template, secrets)
        if found is None:
            continue
        container, _, files = found
        identity, _ = process_of(container["command"])
        identity_files[identity] = files
        for env, item in container_env(container).items():
            if env.endswith("_ADDR"):
                host = _dialled_host(item["value"])
                service = services[host.split(".")[0]]
                dialled.append((identity, host, service["spec"]["selector"]["app.kubernetes.io/component"]))
    assert {server for _, _, server in dialled} == {"auth", "billing", "generation"}, dialled
    for client, host, server in dialled:
        cert = x509.load_pem_x509_certificate(identity_files[server]["tls.crt"])
        assert host in _names(cert), f"{overlay}: {client} dials {host}, {server}'s certificate names {_names(cert)}"
        assert "127.0.0.1" in _names(cert), f"{overlay}: the readiness probe dials 127.0.0.1"
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(identity_files[client]["ca.crt"]))


# -- Compose ------------------------------------------------------------------------------------------------

def _compose_certs_sans() -> list[str]:
    """The `--san` arguments of the `fsg certs` line of compose's `certs` service."""
    script = compose()["services"]["certs"]["command"][-1]
    (line,) = [line for line in script.splitlines() if line.strip().startswith("fsg certs")]
    words = shlex.split(line)
    return [words[i + 1] for i, word in enumerate(words) if word == "--san"]


def test_compose_gives_each_process_its_own_identity_read_only() -> None:
    """Each gRPC process mounts the `tls` volume's subdirectory of its own name, read-only, with its TLS
    variables pointing into it; the certs service fills each subdirectory with that identity's pair; the volume
    with the CA's key is mounted by `certs` alone."""
    services = compose()["services"]
    script = services["certs"]["command"][-1]
    for name, service in services.items():
        mounts = [m for m in service.get("volumes", []) if isinstance(m, dict)]
        short = [m for m in service.get("volumes", []) if isinstance(m, str)]
        if name in COMPOSE_TOOLS:
            continue
        assert not any(m.startswith("tls-ca:") for m in short) and not any(
            m.get("source") == "tls-ca" for m in mounts), f"{name} mounts the CA's volume"
        if name not in IDENTITIES:
            assert not any(m.get("source") == "tls" for m in mounts), f"{name} needs no certificate"
            continue
        (mount,) = [m for m in mounts if m.get("source") == "tls"]
        assert mount["read_only"] is True and mount["volume"]["subpath"] == name, f"{name} mounts {mount}"
        env = compose_env(service)
        for variable, file in TLS_FILES.items():
            assert env.get(variable) == f"{mount['target']}/{file}", f"{name}: {variable}={env.get(variable)}"
    for identity in IDENTITIES:
        for source, file in ((f"/ca/{identity}.crt", "tls.crt"), (f"/ca/{identity}.key", "tls.key")):
            assert re.search(rf"{re.escape(source.replace(identity, '$$id'))} /tls/\$\$id/{file}", script), \
                f"certs does not copy {source} to {identity}'s {file}"
        assert identity in script.split("for id in", 1)[1].splitlines()[0], f"certs skips {identity}"


def test_compose_server_certificates_name_what_the_clients_dial(tmp_path: Path) -> None:
    """`fsg certs` with the certs service's own `--san` arguments makes server certificates that name every
    host a compose process dials (*_ADDR) and the 127.0.0.1 its healthcheck dials."""
    fsg_certs(tmp_path, *_compose_certs_sans())
    services = compose()["services"]
    dialled = []
    for name, service in services.items():
        for env, value in compose_env(service).items():
            if env.endswith("_ADDR") and name not in COMPOSE_TOOLS:
                host = _dialled_host(value)
                assert host in services, f"{name} dials {value}, which is no compose service"
                dialled.append((name, host))
    assert {host for _, host in dialled} == {"auth", "billing", "generation"}, dialled
    for client, host in dialled:
        cert = x509.load_pem_x509_certificate((tmp_path / f"{host}.crt").read_bytes())
        assert host in _names(cert), f"{client} dials {host}; its certificate names {_names(cert)}"
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test", [])
        if "devstack.healthcheck" in test:
            host = _dialled_host(test[test.index("devstack.healthcheck") + 1])
            cert = x509.load_pem_x509_certificate((tmp_path / f"{name}.crt").read_bytes())
            assert host in _names(cert) and test[-1] == name, f"{name}'s healthcheck: {test}"


def test_reading_the_names_tells_a_requested_name_from_another(tmp_path: Path) -> None:
    """The SAN check can fail: a name not requested is not found, and a `--san` for one service names it
    there only."""
    fsg_certs(tmp_path, "billing=billing.fsg.svc.cluster.local")
    billing = _names(x509.load_pem_x509_certificate((tmp_path / "billing.crt").read_bytes()))
    auth = _names(x509.load_pem_x509_certificate((tmp_path / "auth.crt").read_bytes()))
    assert "billing.fsg.svc.cluster.local" in billing and "billing.fsg.svc.cluster.local" not in auth
    assert "auth" in auth and "auth" not in billing


def test_the_name_checked_for_a_dns_target_is_its_host(tmp_path: Path) -> None:
    """What the SAN checks above rely on, shown with real gRPC: a client given `dns:///HOST:PORT` accepts the
    server's certificate when it names HOST and refuses it when it does not (127.0.0.2 is the same loopback
    server, but no certificate names it)."""
    fsg_certs(tmp_path)
    server_tls = load_tls(CommonSettings(FSG_TLS_DIR=tmp_path), "auth")
    client_tls = load_tls(CommonSettings(FSG_TLS_DIR=tmp_path), "edge")
    assert server_tls is not None and client_tls is not None
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("0.0.0.0:0", server_tls.server_credentials())
    server.start()
    try:
        def check(host: str) -> int:
            with grpc.secure_channel(f"dns:///{host}:{port}", client_tls.channel_credentials()) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                return int(reply.status)

        assert check("localhost") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            check("127.0.0.2")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


# -- The repository -----------------------------------------------------------------------------------------

def test_no_private_key_is_committed() -> None:
    """No tracked file holds a PEM private key, and the directories the operator's certificates go into are
    ignored by git (compose keeps them in a volume)."""
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing is committed here")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    holding = [name for name in tracked.decode().split("\0")
               if name and (REPO_ROOT / name).is_file() and PRIVATE_KEY.search((REPO_ROOT / name).read_bytes())]
    assert not holding, f"private keys are committed in {holding}"
    for overlay in OVERLAYS:
        key = f"deploy/k8s/overlays/{overlay}/secrets/tls/auth.key"
        ignored = subprocess.run(["git", "check-ignore", "-q", key], cwd=REPO_ROOT)
        assert ignored.returncode == 0, f"{key} would not be ignored by git"


def test_compose_certs_script_lays_out_each_identity_and_keeps_the_ca(tmp_path: Path) -> None:
    """The `certs` service's script, run by a shell as compose would run it (its `$$` unescaped, /ca and /tls
    moved under tmp_path): each process's directory holds the CA and its own pair, which common/tls.py loads
    and checks (key matches certificate); the key is 0400 and nobody's; a second run keeps the CA."""
    if os.geteuid() != 0:
        pytest.skip("the script hands keys to the user nobody (`install -o nobody`), which needs root")
    script = compose()["services"]["certs"]["command"][-1].replace("$$", "$")
    script = re.sub(r"(?<=\s)/(ca|tls)\b", lambda m: str(tmp_path / m[1]), script)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run() -> bytes:
        result = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return (tmp_path / "ca" / "ca.crt").read_bytes()

    first = run()
    for identity in IDENTITIES:
        directory = tmp_path / "tls" / identity
        assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
        key = (directory / "tls.key").stat()
        assert stat.S_IMODE(key.st_mode) == 0o400 and key.st_uid == pwd.getpwnam("nobody").pw_uid, (
            f"{identity}'s key is {oct(key.st_mode)}, uid {key.st_uid}: the image's user nobody could not read it")
        files = {variable: directory / file for variable, file in TLS_FILES.items()}
        loaded = load_tls(CommonSettings(**files), identity)
        assert loaded is not None
        assert _common_name(x509.load_pem_x509_certificate(loaded.cert)) == f"fsg-{identity}"
    assert run() == first, "a second start made a new CA: every process would distrust the others' certificates"
