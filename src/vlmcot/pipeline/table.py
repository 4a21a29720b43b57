"""Stage `table`: gather every model's evaluation into metrics/eval.json, the paper's Table 2 (SFT
mixes) and Table 6 (SFT vs DPO, with the controls; issue #16 adds DPO's second round and GRPO).

Rows are model x prompt (direct, CoT), columns the eval datasets plus the macro average, in percent.
Only this small stage reruns when one model's evaluation changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vlmcot.config import StrictModel
from vlmcot.io import read_json, write_json

log = logging.getLogger(__name__)

SECTION = "table"


class Config(StrictModel):
    # per-model metrics written by the evaluate stage: <metrics_dir>/<model>.json
    metrics_dir: str = "metrics/eval"
    # models in row order (the paper's: format only, direct only, CoT only, both)
    models: list[str] = ["format", "direct", "cot", "both"]
    # row labels in the markdown table (model name -> label); missing names print as is
    labels: dict[str, str] = {
        "format": "1 format only",
        "direct": "2 direct only",
        "cot": "3 CoT only",
        "both": "4 both (SFT)",
        "dpo": "6 SFT + DPO",
        "cont_sft": "SFT + more SFT (control)",
        "rft": "SFT + RFT (control)",
        "dpo_r2": "6b SFT + DPO, round 2",
        "grpo": "7 SFT + GRPO",
    }
    # all models' metrics merged (dvc metrics)
    out_json: str = "metrics/eval.json"
    # the Table 2 markdown
    out_md: str = "metrics/table2.md"
    # Table 6 rows: the SFT model against DPO (rounds 1 and 2), GRPO and the controls (empty: no Table 6)
    table6_models: list[str] = ["both", "dpo", "dpo_r2", "grpo", "cont_sft", "rft"]
    # the Table 6 markdown
    table6_md: str = "metrics/table6.md"


FORMAT_NOTE = ("\n## Format view: lenient score (fail = strict extraction failure)\n\nLenient: a CoT answer "
               "without `### Answer:` is read from its last non-empty line. A gap between a row's accuracy and its "
               "lenient score is a format effect, not reasoning.\n\n")
CI_NOTE = "Cells: accuracy [95% percentile bootstrap interval over questions].\n\n"


def run(cfg: Config, tracker) -> None:
    from vlmcot.errors import StageError
    from vlmcot.evaluation import format_table, markdown_table

    merged: dict[str, float] = {}
    for name in dict.fromkeys([*cfg.models, *cfg.table6_models]):
        path = Path(cfg.metrics_dir) / f"{name}.json"
        if not path.is_file():
            raise StageError(f"{path} not found (run: dvc repro evaluate@{name})")
        for k, v in read_json(path).items():
            merged[k] = v
    labelled = {}
    for k, v in merged.items():
        model, rest = k.split(".", 1)
        labelled[f"{cfg.labels.get(model, model)}.{rest}"] = v
    def only(models: list[str]) -> dict[str, float]:
        names = {cfg.labels.get(m, m) for m in models}
        return {k: v for k, v in labelled.items() if k.split(".", 1)[0] in names}

    def tables(models: list[str]) -> str:
        order = [cfg.labels.get(m, m) for m in models]
        return CI_NOTE + markdown_table(only(models), order) + FORMAT_NOTE + format_table(only(models), order)

    md = "# Table 2 (embedded run): accuracy in percent\n\n" + tables(cfg.models)
    write_json(cfg.out_json, merged)
    Path(cfg.out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out_md).write_text(md)
    tracker.log_text(md, "table2.md")
    if cfg.table6_models:
        md6 = ("# Table 6 (embedded run): SFT vs DPO, GRPO and controls, accuracy in percent\n\n"
               + tables(cfg.table6_models))
        Path(cfg.table6_md).write_text(md6)
        tracker.log_text(md6, "table6.md")
        md += "\n" + md6
    tracker.log_metrics(merged)
    log.info("\n%s", md)
