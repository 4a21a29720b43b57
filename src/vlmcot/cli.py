"""The `vlmcot` command line: every pipeline stage, plus everyday tools.

    vlmcot --help
    vlmcot prepare --params params.yaml
"""

from __future__ import annotations

import typer

from vlmcot.pipeline import STAGES

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _make_stage_command(name: str, help_text: str):
    def command(params: str = typer.Option("params.yaml", "--params", "-p", help="params file")) -> None:
        from vlmcot.stage import main

        raise typer.Exit(main(name, params))

    command.__name__ = name
    command.__doc__ = help_text
    return command


for _name, _help in STAGES.items():
    app.command(name=_name, help=_help)(_make_stage_command(_name, _help))


if __name__ == "__main__":
    app()
