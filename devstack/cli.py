"""`fsg`: run the whole stack in the foreground, or do one of its steps.

`fsg run` starts (or uses) PostgreSQL, applies migrations, creates the admin on the first start, starts
the Claude simulator when no ANTHROPIC_API_KEY is set, a local fake Stripe (localstripe) when no
STRIPE_SECRET_KEY is set and a local mail sink (devstack/mailsink.py) when no SMTP_URL is set, generates a
development service token on the first start (DATA_DIR/service-token, 0600, kept across restarts, never
printed) unless one is configured, and likewise the deployment's CA and certificates for mutual TLS between
the processes (DATA_DIR/tls, `fsg certs`; FSG_TLS=off for plaintext), then runs the services and the edge
as separate processes under honcho (Procfile). Ctrl-C or SIGTERM stops every process, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from honcho.environ import parse_procfile
from honcho.manager import Manager

from common.db_roles import SERVICE_ROLES, service_dsn
from common.dsn import embedded_dsn, mask_dsn
from common.local_stripe import LOCALSTRIPE_BANNER, local_stripe_env
from common.service_auth import ensure_token_file
from common.settings import REPO_ROOT
from devstack.bootstrap import admin_lines, bootstrap
from devstack.certs import ensure_certs, parse_hostnames
from devstack.embedded_pg import EmbeddedPostgres, bin_dir
from devstack.mailsink import mail_dir
from devstack.settings import StackSettings
from devstack.stripe_events import app as local_stripe_app

app = typer.Typer(help="Film Script Generator: run the stack and its operator steps.", no_args_is_help=True)
app.add_typer(local_stripe_app, name="local-stripe")

SIMULATOR_BANNER = (
    "⚠️  ANTHROPIC_API_KEY is not set: generation uses the LOCAL CLAUDE SIMULATOR at {url} — "
    "answers are synthetic, no real model is called. Set ANTHROPIC_API_KEY to use Claude."
)

MAIL_SINK_BANNER = (
    "📬  SMTP_URL is not set: alert mails go to the LOCAL MAIL SINK at {url} — nothing is sent; every mail is kept "
    "as a file in {directory} (one .eml each, plain text). Set SMTP_URL to send real mail."
)


@contextlib.contextmanager
def database(settings: StackSettings) -> Iterator[str]:
    """DATABASE_URL when given; otherwise the embedded server, stopped on the way out."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    tls_dir = None
    if settings.pg_ssl:
        tls_dir = settings.local_tls_dir()
        ensure_certs(tls_dir)
    server = EmbeddedPostgres(settings.data_dir, settings.pg_port, tls_dir=tls_dir, binaries=settings.pg_bin_dir)
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()
        typer.echo("embedded PostgreSQL stopped")


def process_env(settings: StackSettings, simulate: bool, mail_sink: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the services get their own role's
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        PORT=str(settings.edge_port),
        AUTH_PORT=str(settings.auth_port),
        BILLING_PORT=str(settings.billing_port),
        GENERATION_PORT=str(settings.generation_port),
        AUTH_ADDR=f"127.0.0.1:{settings.auth_port}",
        BILLING_ADDR=f"127.0.0.1:{settings.billing_port}",
        GENERATION_ADDR=f"127.0.0.1:{settings.generation_port}",
        SIM_PORT=str(settings.simulator_port),
    )
    # Readable lines in a terminal; production's default is JSON lines (README, "Logging"). An operator's
    # own LOG_FORMAT wins.
    env.setdefault("LOG_FORMAT", "console")
    if settings.service_auth == "on" and settings.service_token is None and settings.service_token_file is None:
        # Every process reads the same file; a path, not the secret, goes into their environments.
        env["FSG_SERVICE_TOKEN_FILE"] = str(ensure_token_file(settings.data_dir.resolve() / "service-token"))
    configured_tls = any(value is not None for value in (settings.tls_dir, settings.tls_ca, settings.tls_cert,
                                                         settings.tls_key))
    if settings.internal_tls == "on" and not configured_tls:
        # Like the token: made once, kept, and only the directory's path goes into the environments.
        env["FSG_TLS_DIR"] = str(ensure_local_certs(settings))
    if simulate:
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{settings.simulator_port}"
        env["ANTHROPIC_API_KEY"] = "simulator"
        env["GENERATION_SIMULATED"] = "1"
    if mail_sink:
        env["SMTP_URL"] = f"smtp://127.0.0.1:{settings.mailsink_port}"
        env["MAILSINK_PORT"] = str(settings.mailsink_port)
    return env


def ensure_local_certs(settings: StackSettings) -> Path:
    """DATA_DIR/tls with the CA and every certificate, made on first use and renewed when near their end."""
    directory = settings.local_tls_dir()
    made = ensure_certs(directory)
    if made:
        typer.echo(f"TLS: made {', '.join(made)} in {directory}", err=True)
    return directory


def stop_with_parent() -> None:
    """`make run` puts make between the operator and us; if make is killed (SIGTERM to its pid), we are
    re-parented, so treat that as our own SIGTERM rather than run on orphaned."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@app.command()
def run() -> None:
    """Run everything in the foreground until Ctrl-C / SIGTERM."""
    stop_with_parent()
    settings = StackSettings()
    simulate = settings.anthropic_api_key is None
    mail_sink = settings.smtp_url is None
    with database(settings) as dsn:
        typer.echo(f"DATABASE_URL={mask_dsn(dsn)}")
        passwords = settings.role_passwords()
        result = asyncio.run(bootstrap(dsn, settings.migrations_dir, settings.admin_username, settings.admin_email,
                                       passwords))
        for line in admin_lines(result):
            typer.echo(line)
        procfile = parse_procfile((REPO_ROOT / "Procfile").read_text())
        env = process_env(settings, simulate, mail_sink)
        manager = Manager()
        if simulate:
            typer.secho(SIMULATOR_BANNER.format(url=env["ANTHROPIC_BASE_URL"]), fg="yellow", bold=True, err=True)
            manager.add_process("simulator", "python -m simulator", env=env, cwd=str(REPO_ROOT))
        # Only billing talks to Stripe, so only billing gets its settings.
        billing_stripe: dict[str, str] = {}
        if settings.stripe_secret_key is None:
            localstripe, billing_stripe = local_stripe_env(settings.data_dir.resolve(), settings.localstripe_port,
                                                           settings.edge_port)
            typer.secho(LOCALSTRIPE_BANNER.format(url=billing_stripe["STRIPE_API_BASE"]), fg="yellow", bold=True,
                        err=True)
            manager.add_process("localstripe", "python -m devstack.local_stripe", env={**env, **localstripe},
                                cwd=str(REPO_ROOT))
        if mail_sink:
            typer.secho(MAIL_SINK_BANNER.format(url=env["SMTP_URL"], directory=mail_dir(settings.data_dir)),
                        fg="yellow", bold=True, err=True)
            manager.add_process("mailsink", "python -m devstack.mailsink", env=env, cwd=str(REPO_ROOT))
        for name, command in procfile.processes.items():
            # Each service connects as its own least-privilege role; the edge needs no database at all.
            own = {"DATABASE_URL": service_dsn(dsn, name, passwords[name])} if name in SERVICE_ROLES else {}
            if name == "billing":
                own.update(billing_stripe)
            manager.add_process(name, command, env={**env, **own}, cwd=str(REPO_ROOT))
        scheme = "https" if env.get("EDGE_TLS_CERT") else "http"
        typer.echo(f"edge: {scheme}://127.0.0.1:{settings.edge_port}  (Ctrl-C stops everything)")
        manager.loop()
    raise typer.Exit(manager.returncode or 0)


@app.command("certs")
def certs(
    directory: Path | None = typer.Option(None, "--dir", help="where to keep them (default DATA_DIR/tls)"),
    san: list[str] = typer.Option([], "--san", help="another name or IP address for every server certificate "
                                  "(NAME), or for one (SERVICE=NAME: auth, billing, generation, edge, postgres); "
                                  "repeat as needed"),
    force: bool = typer.Option(False, "--force", help="a new CA and new certificates (restart every process)"),
) -> None:
    """Make the deployment's CA and a certificate per process for mutual TLS (keys 0600); keep what is good.

    Server certificates name localhost, 127.0.0.1, ::1 and the service (auth, billing, …) besides any --san.
    """
    settings = StackSettings()
    target = directory or settings.local_tls_dir()
    try:
        hostnames = parse_hostnames(san)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--san") from None
    made = ensure_certs(target, hostnames, force=force)
    typer.echo(f"{target}: " + (f"made {', '.join(made)}" if made else "every certificate is present and good"))


@app.command("bootstrap")
def bootstrap_command() -> None:
    """Apply migrations, let the services' database roles log in (AUTH_DB_PASSWORD, BILLING_DB_PASSWORD,
    GENERATION_DB_PASSWORD; generated into DATA_DIR when unset) and create the admin if missing (for
    deployments that run services separately)."""
    settings = StackSettings()
    if settings.database_url is None:
        raise typer.BadParameter("DATABASE_URL is required")
    result = asyncio.run(bootstrap(settings.dsn(), settings.migrations_dir, settings.admin_username,
                                   settings.admin_email, settings.role_passwords()))
    for line in admin_lines(result):
        typer.echo(line)


@app.command("db-url")
def db_url() -> None:
    """Print the full DATABASE_URL of the running embedded server (for psql / pg_dump)."""
    settings = StackSettings()
    dsn = settings.dsn() if settings.database_url is not None else embedded_dsn(settings.data_dir)
    if dsn is None:
        typer.echo("no embedded database is running (start it with `make run`)", err=True)
        raise typer.Exit(1)
    typer.echo(dsn)


@app.command("pg-bin")
def pg_bin() -> None:
    """Print the folder holding the bundled psql and pg_dump (PostgreSQL 18, matching the server)."""
    typer.echo(str(bin_dir()))


if __name__ == "__main__":
    app()
