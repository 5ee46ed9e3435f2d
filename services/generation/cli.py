"""Generation operator CLI (`fsg-generation`): serve, list models and templates, export a project."""

from __future__ import annotations

import typer

from common.cli import run_with_repository
from services.generation.export import FORMATS
from services.generation.pricing import PriceTable
from services.generation.repository import ProjectRepository
from services.generation.settings import GenerationSettings
from services.generation.templates import TemplateStore

app = typer.Typer(help="Generation service: Claude calls, templates and projects.", no_args_is_help=True)


@app.command()
def serve() -> None:
    """Run the Generation gRPC server."""
    from services.generation.server import main

    main()


@app.command()
def models() -> None:
    """The model allowlist with prices (USD per million input / output tokens)."""
    table = PriceTable.load()
    for m in table.models.values():
        mark = " (default)" if m.id == table.default else ""
        typer.echo(f"{m.id}\t${m.input_usd_per_mtok} / ${m.output_usd_per_mtok}{mark}")


@app.command()
def templates() -> None:
    """The story templates and their acts."""
    for t in TemplateStore().list():
        typer.echo(f"{t.id}\t{t.name}\t{', '.join(a.key for a in t.acts)}")


@app.command("export")
def export_project(user_id: int, project_path: str, fmt: str = typer.Option("fountain", "--format"),
                   writer: str = typer.Option("", help="the name the title page credits (else the story's author)"),
                   ) -> None:
    """Print a user's project as fountain, text or json."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"one of {', '.join(FORMATS)}", param_hint="--format")
    project = run_with_repository(GenerationSettings(), ProjectRepository, lambda repo: repo.get(user_id, project_path))
    typer.echo(FORMATS[fmt].render(project, writer))


if __name__ == "__main__":
    app()
