"""Running a pipeline stage: load its params section, validate, track in MLflow, fail cleanly.

Each module in ``vlmcot.pipeline`` defines ``SECTION`` (its params.yaml section), ``Config`` (a
StrictModel) and ``run(cfg, tracker)``. ``stages/<name>.py`` (through ``vlmcot.cli.cli_entry``) and
``vlmcot <name>`` both call :func:`main`, so DVC and a user at the shell run exactly the same code.
This runner sits above the pipeline and below the CLI: it never imports ``vlmcot.cli``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import ModuleType

# Tiny models on 2 shared cores: torch's default thread count made steps 30x slower
# (STACK-NOTES.md). Must be set before torch is imported anywhere.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vlmcot.config import ConfigError  # noqa: E402
from vlmcot.errors import StageError  # noqa: E402
# load_stage, load_config, current_params_path: re-exported (they live with the stage registry)
from vlmcot.pipeline import current_params_path, load_config, load_stage, set_params_path  # noqa: E402, F401
from vlmcot.records import DataError  # noqa: E402

log = logging.getLogger("vlmcot")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/N, e.g. 0/2") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {text!r}: need 0 <= i < N")
    return i, n


def main(
    module: ModuleType | str, params_path: str = "params.yaml", item: str | None = None, dry_run: bool = False,
    shard: str | None = None,
) -> int:
    """Run a stage. ``item`` selects one entry of a DVC foreach stage (``sft --mix both``); ``dry_run``
    calls the module's ``dry_run(cfg, item)`` (print what would run) without opening an MLflow run;
    ``shard`` ("i/N", stages with ``SHARDABLE``) runs one of N slices, which the plain run merges."""
    if isinstance(module, str):
        module = load_stage(module)
    set_params_path(params_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(module, params_path)
        if (item is not None or dry_run) and not hasattr(module, "dry_run"):
            raise ConfigError(f"stage {module.SECTION} takes neither an item (--mix/--model) nor --dry-run")
        if shard is not None and not getattr(module, "SHARDABLE", False):
            raise ConfigError(f"stage {module.SECTION} does not take --shard (sample and evaluate do)")
        shard_kw = {"shard": parse_shard(shard)} if shard is not None else {}
        if dry_run:
            module.dry_run(cfg, item)
            return 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from vlmcot import tracking

    if getattr(cfg, "torch_threads", None):
        # after OMP_NUM_THREADS=1 above: a stage that measured better asks for more (training, 2 cores)
        import torch

        torch.set_num_threads(cfg.torch_threads)
    t0 = time.time()
    run_name = f"{module.SECTION}@{item}" if item is not None else None
    if shard is not None:
        run_name = f"{run_name or module.SECTION}#shard{shard}"
    try:
        with tracking.stage_run(module.SECTION, cfg.model_dump(mode="json"), run_name=run_name,
                                offline=getattr(cfg, "offline", True)) as tracker:
            if item is not None:
                module.run(cfg, tracker, item, **shard_kw)
            else:
                module.run(cfg, tracker, **shard_kw)
            usage = resource_usage()
            tracker.log_metrics({"stage_wall_s": time.time() - t0, **usage})
            tag_checkpoint(tracker, cfg, item)
            write_train_curves(tracker, module.SECTION, item)
    except (StageError, ConfigError, DataError) as e:
        print(f"error: {module.SECTION}: {e}", file=sys.stderr)
        return 1
    log.info("%s done in %.1fs (peak RSS %.0f MB)", run_name or module.SECTION, time.time() - t0,
             usage["peak_rss_mb"])
    return 0


def write_train_curves(tracker, section: str, item: str | None) -> None:
    """The training curves of this stage's run as a CSV DVC plots (see vlmcot.pipeline.TRAIN_CURVES)."""
    from pathlib import Path

    from vlmcot.io import write_csv
    from vlmcot.pipeline import TRAIN_CURVES, TRAIN_CURVES_DIR

    keys = TRAIN_CURVES.get(section)
    if not keys:
        return
    name = f"{section}_{item}" if item is not None else section
    columns = ["step", *(k.replace("/", "_") for k in keys)]
    write_csv(Path(TRAIN_CURVES_DIR) / f"{name}.csv", tracker.metric_history(keys), columns=columns)


def tag_checkpoint(tracker, cfg, item: str | None) -> None:
    """Reference the model directory a training stage wrote (a DVC output, never copied to MLflow):
    its path and the md5 DVC records for it, so a run names the exact checkpoint in the DVC cache."""
    from pathlib import Path

    from vlmcot.tracking import dvc_hash

    out = getattr(cfg, "out_dir", None)
    if not isinstance(out, str) or not out.startswith("models"):
        return
    path = Path(out) / item if item is not None and (Path(out) / item).is_dir() else Path(out)
    if (path / "config.json").is_file():
        tracker.set_tags({"checkpoint.path": path.as_posix(), "checkpoint.dvc_md5": dvc_hash(path)})


def resource_usage() -> dict[str, float]:
    """Peak resident memory of this process and of its finished children (e.g. accelerate workers)."""
    import resource

    # Linux reports ru_maxrss in KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_children_mb": round(kids, 1)}

