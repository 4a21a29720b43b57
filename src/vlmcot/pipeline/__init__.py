"""One module per pipeline stage (SECTION, Config, run). Ordered as in dvc.yaml."""

STAGES: dict[str, str] = {
    "prepare": "Generate (or load) VQA records and images.",
    "distill": "Teacher writes a rationale ending in '### Answer: X' for each train record.",
    "filter": "Keep rationales whose answer matches the annotation; Table 1 counts, Figure 3 lengths.",
    "mix": "Build the four SFT sets (format, direct, CoT, both) in LLaVA conversation JSONL.",
    "base": "Embedded only: pretrain the tiny LLaVA on image descriptions (the stand-in pretrained VLM).",
    "sft": "SFT one mix (--mix format|direct|cot|both) from the base model with TRL.",
    "evaluate": "Evaluate one model (--model NAME) x {direct, CoT} x every eval dataset.",
    "pairs": "Build correct/incorrect preference pairs from SFT samples (paper 3.3).",
    "table": "Gather the evaluations into metrics/eval.json and the paper's Table 2 (metrics/table2.md).",
}
