"""One module per pipeline stage (SECTION, Config, run). Ordered as in dvc.yaml."""

STAGES: dict[str, str] = {
    "prepare": "Generate (or load) VQA records and images.",
    "distill": "Teacher writes a rationale ending in '### Answer: X' for each train record.",
    "filter": "Keep rationales whose answer matches the annotation; Table 1 counts, Figure 3 lengths.",
    "mix": "Build the four SFT sets (format, direct, CoT, both) in LLaVA conversation JSONL.",
}
