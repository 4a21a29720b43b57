"""vlmcot: the full pipeline behind "Improve Vision Language Model Chain-of-thought Reasoning"
(arXiv 2410.16198): distil -> filter -> mix -> SFT -> sample -> pairs -> DPO -> evaluate -> rerank."""

__version__ = "0.1.0"
