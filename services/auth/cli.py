"""Auth operator CLI (`fsg-auth`): serve, and manage users and keys straight in the database.

Keys printed here are shown once; nothing else ever prints them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from common.cli import run_with_repository
from common.errors import DomainError
from services.auth.repository import AuthRepository
from services.auth.settings import AuthSettings

app = typer.Typer(help="Auth service: users and API keys.", no_args_is_help=True)
T = TypeVar("T")


def _with_repo(action: Callable[[AuthRepository], Awaitable[T]]) -> T:
    """Run `action`; a refusal (no such user, the last enabled admin) is one line on stderr and exit 1,
    not a traceback, so a script or an operator sees at once what was refused and that nothing changed."""
    try:
        return run_with_repository(AuthSettings(), AuthRepository, action)
    except DomainError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve() -> None:
    """Run the Auth gRPC server."""
    from services.auth.server import main

    main()


@app.command("rotate-admin-key")
def rotate_admin_key() -> None:
    """Issue a new key for the admin; the old key stops working at once.

    Allowed even for the last enabled admin (the API refuses that): the key is printed here, on the host.
    """

    async def go(repo: AuthRepository) -> str:
        admin, _ = await repo.ensure_admin()
        _, key = await repo.rotate_key(admin.id, on_host=True)
        return key

    key = _with_repo(go)
    typer.echo(f"✅ New admin API key: {key}")
    typer.echo("   Save this API key securely - it won't be shown again!")


@app.command("rotate-key")
def rotate_key(username: str) -> None:
    """Issue a new key for a user; the old key stops working at once."""

    async def go(repo: AuthRepository) -> str:
        user = await repo.get_user(username=username)
        _, key = await repo.rotate_key(user.id, on_host=True)
        return key

    typer.echo(f"New API key for {username}: {_with_repo(go)}")


@app.command()
def disable(username: str) -> None:
    """Disable a user: their key stops validating at once. Refused for the last enabled admin."""
    _with_repo(lambda repo: _set_disabled(repo, username, True))
    typer.echo(f"{username} disabled")


@app.command()
def enable(username: str) -> None:
    """Enable a disabled user."""
    _with_repo(lambda repo: _set_disabled(repo, username, False))
    typer.echo(f"{username} enabled")


async def _set_disabled(repo: AuthRepository, username: str, disabled: bool) -> None:
    user = await repo.get_user(username=username)
    await repo.set_disabled(user.id, disabled)


@app.command("list-users")
def list_users(limit: int = 100) -> None:
    """List users (id, username, email, admin, disabled, key prefix)."""
    users = _with_repo(lambda repo: repo.list_users(0, limit))
    for u in users:
        flags = ",".join(f for f, on in (("admin", u.is_admin), ("disabled", u.disabled)) if on) or "-"
        typer.echo(f"{u.id}\t{u.username}\t{u.email}\t{flags}\t{u.key_prefix}…")


if __name__ == "__main__":
    app()
