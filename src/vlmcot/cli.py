"""The `vlmcot` command line: every pipeline stage, plus everyday tools.

    vlmcot --help
    vlmcot prepare --params params.yaml
"""

from __future__ import annotations

import typer

from vlmcot.pipeline import STAGES

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _make_stage_command(name: str, help_text: str):
    def command(
        params: str = typer.Option("params.yaml", "--params", "-p", help="params file"),
        item: str | None = typer.Option(
            None, "--item", "--mix", "--model", help="foreach item of the stage (sft: a mix; evaluate: a model)"
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="print what would run (command, resolved config)"),
    ) -> None:
        from vlmcot.stage import main

        raise typer.Exit(main(name, params, item=item, dry_run=dry_run))

    command.__name__ = name
    command.__doc__ = help_text
    return command


for _name, _help in STAGES.items():
    app.command(name=_name, help=_help)(_make_stage_command(_name, _help))


@app.command()
def profile(
    profile_file: str = typer.Argument(..., help="profile to overlay, e.g. configs/paper.yaml"),
    params: str = typer.Option("params.yaml", "--params", "-p", help="params file to rewrite"),
    out: str | None = typer.Option(None, "--out", "-o", help="write here instead of overwriting --params"),
) -> None:
    """Switch scale: overlay a profile (configs/paper.yaml) on params.yaml, keeping its comments.
    `git checkout params.yaml` returns to the embedded default."""
    import sys
    from pathlib import Path

    from vlmcot.config import ConfigError
    from vlmcot.profile import apply_profile, validate_params

    try:
        text = apply_profile(params, profile_file)
        target = Path(out or params)
        target.write_text(text, encoding="utf-8")
        validate_params(target)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2)
    print(f"wrote {target} ({profile_file} over {params}); every section validates. Next: vlmcot plan -p {target}")


@app.command()
def plan(params: str = typer.Option("params.yaml", "--params", "-p", help="params file")) -> None:
    """Dry run of the whole pipeline: each stage's command and how it executes at this scale."""
    import sys

    from vlmcot.config import ConfigError
    from vlmcot.profile import plan as make_plan

    try:
        for line in make_plan(params):
            print(line)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2)


if __name__ == "__main__":
    app()
