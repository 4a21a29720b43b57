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


if __name__ == "__main__":
    app()
