"""Training loops: SFT (TRL SFTTrainer) for the base and sft stages; the DPO stage will live beside it."""
