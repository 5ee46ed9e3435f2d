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
from common.ports import EDGE, PortTaken, assign_ports, check_free
from common.service_auth import ensure_token_file
from common.settings import REPO_ROOT
from devstack.backup import BackupError, backup, backups, check_archive, restore
from devstack.bootstrap import admin_lines, bootstrap
from devstack.certs import ensure_certs, parse_hostnames
from devstack.embedded_pg import EmbeddedPostgres, bin_dir
from devstack.mailsink import mail_dir
from devstack.settings import BackupSettings, StackSettings
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


def _embedded(settings: StackSettings, pg_port: int) -> EmbeddedPostgres:
    """The DATA_DIR's embedded server as `make run` and the operator commands run it: its binaries, and with
    PG_SSL=on its certificate from the local CA (made if missing)."""
    tls_dir = None
    if settings.pg_ssl:
        tls_dir = settings.local_tls_dir()
        ensure_certs(tls_dir)
    return EmbeddedPostgres(settings.data_dir, pg_port, tls_dir=tls_dir, binaries=settings.pg_bin_dir)


@contextlib.contextmanager
def database(settings: StackSettings, pg_port: int) -> Iterator[str]:
    """DATABASE_URL when given; otherwise the embedded server, stopped on the way out."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with _embedded(settings, pg_port) as server:
        yield server.dsn()
    typer.echo("embedded PostgreSQL stopped")


def process_env(settings: StackSettings, ports: dict[str, int], simulate: bool,
                mail_sink: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the services get their own role's
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        PORT=str(settings.edge_port),
        AUTH_PORT=str(ports["AUTH_PORT"]),
        BILLING_PORT=str(ports["BILLING_PORT"]),
        GENERATION_PORT=str(ports["GENERATION_PORT"]),
        AUTH_ADDR=f"127.0.0.1:{ports['AUTH_PORT']}",
        BILLING_ADDR=f"127.0.0.1:{ports['BILLING_PORT']}",
        GENERATION_ADDR=f"127.0.0.1:{ports['GENERATION_PORT']}",
        SIM_PORT=str(ports["SIM_PORT"]),
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
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{ports['SIM_PORT']}"
        env["ANTHROPIC_API_KEY"] = "simulator"
        env["GENERATION_SIMULATED"] = "1"
    if mail_sink:
        env["SMTP_URL"] = f"smtp://127.0.0.1:{ports['MAILSINK_PORT']}"
        env["MAILSINK_PORT"] = str(ports["MAILSINK_PORT"])
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


def stack_ports(settings: StackSettings, simulate: bool, mail_sink: bool) -> dict[str, int]:
    """This data directory's ports (common/ports.py), each checked free before anything starts: a taken one
    ends the launcher with one line naming it and its variable, leaving nothing running."""
    given = settings.given_ports()
    ports = assign_ports(settings.data_dir, given, settings.edge_port)
    # Each process binds where its own *_HOST says (127.0.0.1 unless set); PostgreSQL, localstripe: 127.0.0.1.
    hosts = {EDGE: "EDGE_HOST", "AUTH_PORT": "AUTH_HOST", "BILLING_PORT": "BILLING_HOST",
             "GENERATION_PORT": "GENERATION_HOST", "SIM_PORT": "SIM_HOST", "MAILSINK_PORT": "MAILSINK_HOST"}
    used = {EDGE, "AUTH_PORT", "BILLING_PORT", "GENERATION_PORT"}
    adopted = settings.database_url is None and EmbeddedPostgres(settings.data_dir, ports["PG_PORT"]).is_running()
    if settings.database_url is None and not adopted:
        used.add("PG_PORT")  # (a server already running on this data directory is adopted, not started)
    used |= {"SIM_PORT"} if simulate else set()
    used |= {"LOCALSTRIPE_PORT"} if settings.stripe_secret_key is None else set()
    used |= {"MAILSINK_PORT"} if mail_sink else set()
    every = {**ports, EDGE: settings.edge_port}
    wanted = {variable: (os.environ.get(hosts.get(variable, ""), "127.0.0.1"), every[variable])
              for variable in every if variable in used}
    try:
        check_free(wanted, given, settings.data_dir)
    except PortTaken as exc:
        # Its PostgreSQL is up, so the likeliest holder is another launcher on this very DATA_DIR.
        again = f" (is `make run` already running with DATA_DIR={settings.data_dir}?)" if adopted else ""
        typer.secho(f"fsg run: {exc}{again}", fg="red", err=True)
        raise typer.Exit(1) from None
    return ports


@app.command()
def run() -> None:
    """Run everything in the foreground until Ctrl-C / SIGTERM."""
    stop_with_parent()
    settings = StackSettings()
    simulate = settings.anthropic_api_key is None
    mail_sink = settings.smtp_url is None
    ports = stack_ports(settings, simulate, mail_sink)
    with database(settings, ports["PG_PORT"]) as dsn:
        typer.echo(f"DATABASE_URL={mask_dsn(dsn)}")
        passwords = settings.role_passwords()
        result = asyncio.run(bootstrap(dsn, settings.migrations_dir, settings.admin_username, settings.admin_email,
                                       passwords))
        for line in admin_lines(result):
            typer.echo(line)
        procfile = parse_procfile((REPO_ROOT / "Procfile").read_text())
        env = process_env(settings, ports, simulate, mail_sink)
        manager = Manager()
        if simulate:
            typer.secho(SIMULATOR_BANNER.format(url=env["ANTHROPIC_BASE_URL"]), fg="yellow", bold=True, err=True)
            manager.add_process("simulator", "python -m simulator", env=env, cwd=str(REPO_ROOT))
        # Only billing talks to Stripe, so only billing gets its settings.
        billing_stripe: dict[str, str] = {}
        if settings.stripe_secret_key is None:
            localstripe, billing_stripe = local_stripe_env(settings.data_dir.resolve(), ports["LOCALSTRIPE_PORT"],
                                                           settings.edge_port)
            typer.secho(LOCALSTRIPE_BANNER.format(url=billing_stripe["STRIPE_API_BASE"]), fg="yellow", bold=True,
                        err=True)
            manager.add_process("localstripe", "python -m devstack.local_stripe", env={**env, **localstripe},
                                cwd=str(REPO_ROOT))
        if mail_sink:
            typer.secho(MAIL_SINK_BANNER.format(url=env["SMTP_URL"], directory=mail_dir(settings.data_dir)),
                        fg="yellow", bold=True, err=True)
            manager.add_process("mailsink", "python -m devstack.mailsink", env=env, cwd=str(REPO_ROOT))
        if settings.backup_interval_hours > 0:
            typer.echo(f"backups: every {settings.backup_interval_hours} h into {settings.backups_dir()}, "
                       f"the newest {settings.backup_keep} kept")
            manager.add_process("backup", f"python -m devstack.cli backup --every {settings.backup_interval_hours}",
                                env={**env, "DATABASE_URL": dsn, "DATA_DIR": str(settings.data_dir.resolve())},
                                cwd=str(REPO_ROOT))
        for name, command in procfile.processes.items():
            # Each service connects as its own least-privilege role; the edge needs no database at all.
            own = {"DATABASE_URL": service_dsn(dsn, name, passwords[name])} if name in SERVICE_ROLES else {}
            if name == "billing":
                own.update(billing_stripe)
            manager.add_process(name, command, env={**env, **own}, cwd=str(REPO_ROOT))
        scheme = "https" if env.get("EDGE_TLS_CERT") else "http"
        typer.echo(f"edge: {scheme}://127.0.0.1:{settings.edge_port}  (Ctrl-C stops everything)")
        typer.echo(f"web app: {scheme}://localhost:{settings.edge_port}/app  (sign in with an API key)")
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

@contextlib.contextmanager
def operator_database(settings: StackSettings, create: bool) -> Iterator[str]:
    """The owner's URL for an operator command: DATABASE_URL; else the embedded server running on DATA_DIR;
    else that server started for the command (initialised first if `create`: a restore into a new DATA_DIR)
    and stopped after it."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    running = embedded_dsn(settings.data_dir)
    if running is not None:
        yield running
        return
    if not create and not (settings.data_dir / "postgres" / "PG_VERSION").exists():
        raise BackupError(f"DATABASE_URL is not set and {settings.data_dir} holds no embedded database")
    given = settings.given_ports()
    port = assign_ports(settings.data_dir, given, settings.edge_port)["PG_PORT"]
    check_free({"PG_PORT": ("127.0.0.1", port)}, given, settings.data_dir)
    with _embedded(settings, port) as server:
        yield server.dsn()


def _failed(command: str, exc: Exception) -> typer.Exit:
    typer.secho(f"fsg {command}: {exc}", fg="red", err=True)
    return typer.Exit(1)


def _backup_every(settings: StackSettings, directory: Path, keep: int, hours: float) -> None:
    """Back up whenever the newest backup in `directory` is `hours` old (at once if there is none), forever;
    a failed attempt is reported and tried again a minute later, never ending the process (`make run`'s
    honcho would stop the whole stack with it)."""
    interval = hours * 3600
    while True:
        newest = backups(directory)[-1:]
        age = time.time() - newest[0].stat().st_mtime if newest else interval
        time.sleep(max(0.0, interval - age))
        try:
            with operator_database(settings, create=False) as dsn:
                typer.echo(backup(dsn, directory, keep))
        except (BackupError, PortTaken, RuntimeError, OSError) as exc:
            typer.secho(f"fsg backup: {exc}", fg="red", err=True)
            time.sleep(min(interval, 60))


@app.command("backup")
def backup_command(
    directory: Path | None = typer.Option(None, "--dir", help="where (FSG_BACKUP_DIR; default DATA_DIR/backups)"),
    keep: int | None = typer.Option(None, "--keep", min=1, help="keep the newest N (FSG_BACKUP_KEEP; default 7)"),
    every: float | None = typer.Option(None, "--every", min=0, help="hours: keep backing up, this often"),
) -> None:
    """pg_dump -Fc of the database (DATABASE_URL, or DATA_DIR's embedded one) into a new timestamped file;
    deletes all but the newest --keep and prints the file."""
    settings = BackupSettings()
    folder = directory if directory is not None else settings.backups_dir()
    kept = keep if keep is not None else settings.backup_keep
    if every:
        _backup_every(settings, folder, kept, every)
    try:
        with operator_database(settings, create=False) as dsn:
            typer.echo(backup(dsn, folder, kept))
    except (BackupError, PortTaken, RuntimeError) as exc:  # RuntimeError: the embedded server would not start
        raise _failed("backup", exc) from None


@app.command("restore")
def restore_command(
    file: Path,
    force: bool = typer.Option(False, "--force", help="replace a database that has data (public is dropped first)"),
) -> None:
    """Restore a backup into DATABASE_URL, or DATA_DIR's embedded database (started, and created, if need
    be), which must be empty unless --force."""
    settings = BackupSettings()
    try:
        check_archive(file)  # before any server is started
        with operator_database(settings, create=True) as dsn:
            restore(dsn, file, force)
    except (BackupError, PortTaken, RuntimeError) as exc:  # RuntimeError: the embedded server would not start
        raise _failed("restore", exc) from None
    typer.echo(f"restored {file}. The services' roles get their logins and passwords from the bootstrap: start "
               "the stack (`make run`) or run `fsg bootstrap`.")


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
