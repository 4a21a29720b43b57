"""The `vlmcot` command line: every pipeline stage, plus everyday tools.

    vlmcot --help
    vlmcot prepare --params params.yaml
"""

from __future__ import annotations

import typer

from vlmcot.pipeline import DRY_RUN, ITEM_OPTIONS, SHARDED, STAGES

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _make_stage_command(name: str, help_text: str):
    """A stage subcommand with only the options that stage takes: --params always, the foreach item
    option (--mix / --model / --item) on foreach stages, --dry-run where the stage implements it."""
    import inspect

    item_opt = ITEM_OPTIONS.get(name)

    def command(**kwargs) -> None:
        from vlmcot.stage import main

        raise typer.Exit(main(name, kwargs["params"], item=kwargs.get("item"), dry_run=kwargs.get("dry_run", False),
                              shard=kwargs.get("shard")))

    P = inspect.Parameter
    sig = [P("params", P.KEYWORD_ONLY, annotation=str,
             default=typer.Option("params.yaml", "--params", "-p", help="params file"))]
    if item_opt:
        sig.append(P("item", P.KEYWORD_ONLY, annotation=str | None,
                     default=typer.Option(None, item_opt[0], help=item_opt[1])))
    if name in DRY_RUN:
        sig.append(P("dry_run", P.KEYWORD_ONLY, annotation=bool,
                     default=typer.Option(False, "--dry-run", help="print what would run (command, resolved config)")))
    if name in SHARDED:
        sig.append(P("shard", P.KEYWORD_ONLY, annotation=str | None,
                     default=typer.Option(None, "--shard", help="run slice i of N (i/N, e.g. 0/2); the run without --shard merges")))
    command.__signature__ = inspect.Signature(sig)
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


@app.command("import-sharegpt")
def import_sharegpt(
    kind: str = typer.Argument(..., help="sft | pairs"),
    source: str = typer.Argument(..., help="the release's sft/ or dpo_preview/ folder, or one file"),
    out: str = typer.Option(..., "--out", "-o", help="JSONL to write (our SFTRecord / PairRecord rows)"),
    image_root: str | None = typer.Option(None, help="where the release's image archives were unpacked"),
) -> None:
    """Import the released ShareGPT-4o-Reasoning SFT rows or DPO pairs (skip distillation / sampling).
    Point `dpo.pairs` at the imported pairs, or use `mix.source: sharegpt` for the SFT files."""
    from vlmcot.adapters.core import LoadReport
    from vlmcot.io import write_jsonl
    from vlmcot.sharegpt import import_pairs, import_sft

    if kind not in ("sft", "pairs"):
        raise typer.BadParameter("kind must be sft or pairs")
    report = LoadReport()
    rows = (import_sft if kind == "sft" else import_pairs)(source, image_root, report)
    n = write_jsonl(out, [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in rows], sort_key="id")
    print(f"imported {n} {kind} rows to {out} ({report.bad} bad rows skipped)")


@app.command("export-sharegpt")
def export_sharegpt(
    kind: str = typer.Argument(..., help="sft | pairs"),
    source: str = typer.Argument(..., help="our JSONL: data/mix/both.jsonl or data/pairs/pairs.jsonl"),
    out_dir: str = typer.Option(..., "--out", "-o", help="folder for the released file layout"),
    image_root: str | None = typer.Option(None, help="make image paths relative to this folder"),
) -> None:
    """Export our SFT mix or preference pairs in the released ShareGPT-4o-Reasoning formats."""
    from vlmcot.io import read_jsonl
    from vlmcot.records import PairRecord, SFTRecord
    from vlmcot.sharegpt import export_pairs, export_sft

    if kind == "sft":
        files = export_sft([SFTRecord.model_validate(r) for r in read_jsonl(source)], out_dir, image_root)
    elif kind == "pairs":
        files = export_pairs([PairRecord.model_validate(r) for r in read_jsonl(source)], out_dir, image_root)
    else:
        raise typer.BadParameter("kind must be sft or pairs")
    for f, n in sorted(files.items()):
        print(f"{n:8d}  {f}")


@app.command("convert-llava")
def convert_llava(
    src: str = typer.Argument(..., help="original-format LLaVA-NeXT folder (LlavaLlamaForCausalLM: config.json, shards)"),
    dst: str = typer.Argument(..., help="output folder for the HF LlavaNextForConditionalGeneration model"),
    dtype: str | None = typer.Option(None, help="float32 | bfloat16 | float16 (default: the source's dtype)"),
    vision_config: str | None = typer.Option(
        None, help="CLIP config folder/json (default: read from the checkpoint's vision tower tensors)"
    ),
) -> None:
    """Convert Open-LLaVA-NeXT / LLaVA-NeXT weights (the paper's base) to transformers' LlavaNext,
    with a processor whose chat template renders the llava_llama_3 conversation (docs/paper.md)."""
    import sys

    from vlmcot.models.convert_llava import ConversionError, convert_llava_next

    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise typer.BadParameter("dtype must be float32, bfloat16 or float16")
    try:
        out = convert_llava_next(src, dst, dtype=dtype, vision_config=vision_config)
    except (ConversionError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2)
    print(f"wrote {out}: LlavaNextForConditionalGeneration + processor (llava_llama_3 chat template)")


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


def cli_entry(name: str) -> int:
    """Entry for ``stages/<name>.py``: the same command line as ``vlmcot <name>``."""
    import sys

    try:
        app(args=[name, *sys.argv[1:]], prog_name=f"stages/{name}.py")
    except SystemExit as e:  # typer/click always exit; usage errors are printed by click itself
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    app()
