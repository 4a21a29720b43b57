"""Teachers write a rationale ending in '### Answer: X' for a VQA record (paper stage A)."""
