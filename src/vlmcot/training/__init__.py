"""Training loops: SFT (TRL SFTTrainer, sft.py) for the base, sft and control stages, DPO (DPOTrainer, dpo.py),
the TrainingArguments both share (common.py), and the RFT control's data (rft.py)."""
