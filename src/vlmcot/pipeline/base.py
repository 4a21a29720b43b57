"""Stage `base` (embedded scale only): the tiny LLaVA learns to see, the stand-in for a pretrained VLM.

Trains a BPE tokenizer on the world's train text, builds a tiny LlavaForConditionalGeneration from
params, pretrains its vision tower to read (dense per-patch token and colour labels redrawn from each
image's facts, vlmcot.training.vision: the stand-in for CLIP's pretraining), then trains it on image ->
description (``meta["description"]`` of every train image, the general instruction prompt of the mix
stage). It never sees a QA format: that is what SFT teaches.
Reports how well it learned to read: exact match and per-fact recall of greedy descriptions of eval
images. At paper scale this stage is skipped and ``sft.base_model`` names a hub model instead.
"""

from __future__ import annotations

import logging
import re
import statistics
from pathlib import Path

from pydantic import Field

from vlmcot.config import StrictModel, save_resolved
from vlmcot.generation import GenerationConfig, GenRequest, HFBackend
from vlmcot.io import iter_jsonl, read_jsonl, write_json, write_jsonl
from vlmcot.models import (
    TinyLlavaConfig,
    build_processor,
    build_tiny_llava,
    count_parameters,
    train_bpe_tokenizer,
)
from vlmcot.models.tokenizer import IMAGE_TOKEN
from vlmcot.prompts import (
    ANSWER_MARKER,
    COT_MC,
    COT_SHORT,
    DIRECT_MC,
    DIRECT_SHORT,
    GENERAL_PROMPT,
    format_options,
)
from vlmcot.records import VQARecord
from vlmcot.training.checkpoints import run_hash
from vlmcot.training.sft import TrainConfig, train_sft
from vlmcot.training.text import TextPretrainConfig, pretrain_language_model
from vlmcot.training.vision import VisionPretrainConfig, pretrain_vision_tower
from vlmcot.world.text import corpus as text_corpus

log = logging.getLogger(__name__)

SECTION = "base"


class Config(StrictModel):
    # False at paper scale: the stage only records that it was skipped (sft.base_model is a hub id)
    enabled: bool = True
    # train records; their images and meta.description are the pretraining data
    records: str = "data/prepared/train.jsonl"
    # eval records; their images measure description accuracy
    eval_records: str = "data/prepared/eval.jsonl"
    # where the model + processor are saved (save_pretrained layout)
    out_dir: str = "models/base"
    # checkpoints for resume (not a DVC output; wiped when the config changes)
    checkpoint_dir: str = "models/checkpoints/base"
    # description accuracy and training stats
    metrics: str = "metrics/base.json"
    # generated eval descriptions, one JSON row per image
    predictions: str = "data/base/descriptions.jsonl"
    # image paths in records are relative to this folder
    root: str = "."
    # sizes of the tiny LLaVA
    model: TinyLlavaConfig = TinyLlavaConfig(patch_size=8, vision_hidden=128, vision_layers=3, max_position=384)
    # BPE merges kept only for pairs seen at least this often
    tokenizer_min_frequency: int = Field(2, ge=1)
    # LLaVA conversation JSONL files whose turns (prompts, rationales) join the tokenizer's training text,
    # as a pretrained tokenizer has seen such words; without them rationales and prompts split into
    # single letters ("T h e", "A n s w er") and run ~35% longer
    tokenizer_texts: list[str] = ["data/mix/both.jsonl"]
    # torch intra-op threads for this stage (DVC runs stages one at a time; 2 on 2 cores: 1.81x, bench_threads)
    torch_threads: int = Field(2, ge=1)
    # language pretraining of the LM on the world's plain text before anything else (steps 0: skip)
    text_pretrain: TextPretrainConfig = TextPretrainConfig()
    # reading pretraining of the vision tower before description training (steps 0: skip)
    vision_pretrain: VisionPretrainConfig = VisionPretrainConfig(steps=1000, bf16=True)
    # trainer settings for description pretraining
    train: TrainConfig = TrainConfig(freeze_vision_tower=True, num_train_epochs=4, per_device_train_batch_size=32,
                                     save_steps=100, max_length=384, bf16=True)
    # eval images described for the accuracy report (0: skip)
    eval_images: int = Field(200, ge=0)
    # decoding for the description report
    generation: GenerationConfig = GenerationConfig(max_new_tokens=96, batch_size=100)


def tokenizer_corpus(records: list[VQARecord]) -> list[str]:
    """The world's train text plus every fixed string the pipeline writes (prompts, marker, headers)."""
    texts = ["USER:\nASSISTANT:\n", GENERAL_PROMPT, ANSWER_MARKER, DIRECT_SHORT, DIRECT_MC, COT_SHORT, COT_MC]
    for r in records:
        texts.append(r.question)
        texts.append(r.answer)
        if r.choices:
            texts.append(format_options(r.choices))
        desc = (r.meta or {}).get("description")
        if isinstance(desc, str):
            texts.append(desc)
    return texts


def conversation_texts(paths: list[str]) -> tuple[list[str], list[str]]:
    """(every turn's text in these LLaVA conversation JSONL files, one error per skipped row or line)."""
    texts: list[str] = []
    errors: list[str] = []
    for path in paths:
        for line, row in iter_jsonl(path, on_error=errors.append):
            turns = row.get("conversations")
            if not isinstance(turns, list) or not all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in turns):
                errors.append(f"{path}:{line}: record {row.get('id', '?')}: no conversations list of turns with text")
                continue
            texts.extend(t["value"].replace(IMAGE_TOKEN, "").strip() for t in turns)
    return texts, errors


def description_rows(records: list[VQARecord], root: str) -> tuple[list[dict], list[str]]:
    """One conversation per distinct image: the general prompt -> its description."""
    from vlmcot.training.data import sft_rows

    seen: set[str] = set()
    convs, errors = [], []
    for r in sorted(records, key=lambda r: r.id):
        desc = (r.meta or {}).get("description")
        if not isinstance(desc, str) or not desc.strip():
            errors.append(f"record {r.id}: no meta.description")
            continue
        if r.image in seen:
            continue
        seen.add(r.image)
        convs.append(
            {
                "id": r.id,
                "image": r.image,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{GENERAL_PROMPT}"},
                    {"from": "gpt", "value": desc.strip()},
                ],
            }
        )
    rows, bad = sft_rows(convs, root)
    return rows, errors + bad


# Facts are the clauses of a description: "From top to bottom: oat is 3, nut is 9 and bean is 2."
# gives "from top to bottom", "oat is 3", "nut is 9", "bean is 2".
_FACT_SPLIT_RE = re.compile(r"[.;:!?,]\s+|\s+and\s+|\n+")


def _norm(s: str) -> str:
    return " ".join(s.lower().split()).rstrip(".;")


def facts(description: str) -> list[str]:
    """A description split into its facts (clauses), normalised."""
    return [f for f in (_norm(p) for p in _FACT_SPLIT_RE.split(description.strip())) if f]


def description_scores(prediction: str, reference: str) -> dict[str, float]:
    """exact: whole description equal; fact_recall: share of reference facts stated verbatim;
    value_recall: the same over facts holding a number (what reading the image takes, no boilerplate)."""
    ref, pred = facts(reference), set(facts(prediction))
    values = [f for f in ref if any(c.isdigit() for c in f)]
    return {
        "exact": float(_norm(prediction) == _norm(reference)),
        "fact_recall": sum(f in pred for f in ref) / len(ref) if ref else 0.0,
        # None when the description states no number (it then counts in neither direction)
        "value_recall": sum(f in pred for f in values) / len(values) if values else None,
    }


def load_records(path: str) -> list[VQARecord]:
    from vlmcot.records import validate_vqa
    from vlmcot.errors import StageError

    if not Path(path).is_file():
        raise StageError(f"{path} not found (run the prepare stage first)")
    good, errors = validate_vqa(read_jsonl(path))
    for e in errors[:10]:
        log.warning("%s: %s", path, e)
    if errors and len(errors) > 0.01 * (len(good) + len(errors)):
        raise StageError(f"{path}: {len(errors)} bad records (first: {errors[0]})")
    return good


def run(cfg: Config, tracker) -> None:
    from vlmcot.errors import StageError

    if not cfg.enabled:
        # Paper scale: a pretrained VLM replaces this stage. Keep the DVC outputs so the DAG stays valid.
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out_dir) / "SKIPPED").write_text("base.enabled is false: sft.base_model names the model\n")
        write_jsonl(cfg.predictions, [])
        write_json(cfg.metrics, {"skipped": 1})
        return
    train = load_records(cfg.records)
    rows, errors = description_rows(train, cfg.root)
    if errors:
        log.warning("base: %d records skipped (first: %s)", len(errors), errors[0])
    if not rows:
        raise StageError(f"{cfg.records}: no record with an image and meta.description to pretrain on")

    missing = [p for p in cfg.tokenizer_texts if not Path(p).is_file()]
    if missing:
        raise StageError(f"base.tokenizer_texts: file not found: {missing[0]}")
    extra, bad = conversation_texts(cfg.tokenizer_texts)
    if bad:
        log.warning("base: %d tokenizer_texts rows skipped (first: %s)", len(bad), bad[0])
    tp = cfg.text_pretrain
    docs = text_corpus(tp.documents, tp.seed, tp.corpus) if tp.steps else []
    tokenizer = train_bpe_tokenizer(
        tokenizer_corpus(train) + extra + docs, vocab_size=cfg.model.vocab_size,
        min_frequency=cfg.tokenizer_min_frequency,
    )
    processor = build_processor(tokenizer, cfg.model.image_size, cfg.model.patch_size)
    model = build_tiny_llava(cfg.model, tokenizer)
    n_params = count_parameters(model)
    log.info("tiny LLaVA: %d parameters, vocab %d, %d description rows", n_params, len(tokenizer), len(rows))
    text_stats = {}
    if tp.steps:
        # held-out documents from another seed: the loss on text the LM never saw
        text_stats = pretrain_language_model(
            model, tokenizer, docs, tp, heldout_docs=text_corpus(200, tp.seed + 1, tp.corpus),
            log_metrics=lambda m, step: tracker.log_metrics(m, step=step),
        )
        log.info("text pretraining: %s", text_stats)
    vision_stats = pretrain_reading(cfg, model, processor, train, tracker) if cfg.vision_pretrain.steps else {}

    stats = train_sft(
        model,
        processor,
        rows,
        cfg.train,
        cfg.out_dir,
        cfg.checkpoint_dir,
        # no model folder to start from: the model is built here, from the config and a tokenizer trained on
        # the records and tokenizer_texts (a rewritten mix changes it): its vocabulary stands for the start
        run_hash=run_hash(cfg, tokenizer.get_vocab(), start_model=None, rows=rows),
        report_to=["mlflow"],
        run_name="base",
    )
    save_resolved(cfg, Path(cfg.out_dir) / "vlmcot_config.json")

    metrics: dict[str, float] = {
        "params": n_params,
        "vocab": len(tokenizer),
        "train_rows": len(rows),
        "train_steps": stats.get("global_step", 0),
        "train_loss": stats.get("train_loss", 0.0),
        "train_runtime_s": stats.get("train_runtime", 0.0),
        **{f"vision.{k}": v for k, v in vision_stats.items()},
        **{f"text.{k}": v for k, v in text_stats.items()},
    }
    if tp.steps:
        # what the description training left of the arithmetic (it trains the same LM on other text)
        from vlmcot.training.text import arithmetic_facts, fact_accuracy

        metrics["text.arithmetic_acc_after_base"] = fact_accuracy(
            model, processor.tokenizer, arithmetic_facts(200, tp.seed + 7, tp.corpus.max_digit), tp.bf16)
    if cfg.eval_images:
        metrics.update(describe_eval(cfg, model, processor))
    write_json(cfg.metrics, metrics)
    tracker.log_metrics({f"base.{k}": v for k, v in metrics.items()})
    log.info("base: %s", metrics)


def reading_targets(
    records: list[VQARecord], processor, cfg: Config, vocab: dict[str, int] | None = None, limit: int | None = None
):
    """Pixel values and per-patch token / colour ids of the distinct images of ``records``.

    ``vocab`` None builds the token vocabulary (0: no token, last id: unknown) from these records;
    given, tokens outside it map to unknown. An image whose redraw from its facts differs from the file
    on disk (edited images, another world version, a non-world dataset) is skipped and reported: its
    labels would be wrong. ``limit`` stops after that many images. Returns (pixels, tokens, colours,
    vocab, errors).
    """
    import numpy as np
    import torch
    from PIL import Image

    from vlmcot.world.layout import patch_targets

    size, patch = cfg.model.image_size, cfg.model.patch_size
    seen: set[str] = set()
    pixels, toks, cols, errors = [], [], [], []
    for r in sorted(records, key=lambda r: r.id):
        if r.image in seen:
            continue
        if limit is not None and len(pixels) >= limit:
            break
        seen.add(r.image)
        try:
            with Image.open(Path(cfg.root) / r.image) as im:
                disk = np.asarray(im.convert("RGB"))
            img, t = patch_targets(r.facts, size, patch, cfg.vision_pretrain.min_overlap)
        except (OSError, ValueError, KeyError, TypeError) as e:
            errors.append(f"record {r.id}: {type(e).__name__}: {e}")
            continue
        if disk.shape != (size, size, 3) or not np.array_equal(disk, np.asarray(img.convert("RGB"))):
            errors.append(f"record {r.id}: image {r.image} is not its facts redrawn at {size} px")
            continue
        pixels.append(img)
        toks.append(t.tokens)
        cols.append(t.colours)
    if vocab is None:
        vocab = {"": 0, **{w: i + 1 for i, w in enumerate(sorted({w for ts in toks for w in ts} - {""}))}}
        vocab["<unk>"] = len(vocab)
    unk = vocab["<unk>"]
    if not pixels:
        return None, None, None, vocab, errors
    x = processor.image_processor(images=pixels, return_tensors="pt")["pixel_values"]
    y_tok = torch.tensor([[vocab.get(w, unk) for w in ts] for ts in toks])
    return x, y_tok, torch.tensor(cols), vocab, errors


def pretrain_reading(cfg: Config, model, processor, train: list[VQARecord], tracker) -> dict[str, float]:
    """Pretrain ``model``'s vision tower in place to read (vlmcot.training.vision); patch accuracies on
    eval images. Deterministic given the config, so a resumed stage simply redoes it (~2 min)."""
    from vlmcot.errors import StageError
    from vlmcot.world.layout import COLOUR_CLASSES

    vp = cfg.vision_pretrain
    log.info("vision pretraining: labelling the patches of %d train images", len(train))
    x, y_tok, y_col, vocab, errors = reading_targets(train, processor, cfg)
    if errors:
        log.warning("vision pretraining: %d train images skipped (first: %s)", len(errors), errors[0])
    if x is None:
        raise StageError(f"{cfg.records}: no world image to pretrain the vision tower on ({errors[:1]}); "
                         "set base.vision_pretrain.steps: 0")
    evaluation = None
    if vp.eval_images:
        ex, ey_tok, ey_col, _, _ = reading_targets(load_records(cfg.eval_records), processor, cfg, vocab, vp.eval_images)
        if ex is not None:
            evaluation = (ex, ey_tok, ey_col)
    log.info("vision pretraining: %d images, %d token classes, %d steps", len(x), len(vocab), vp.steps)
    stats = pretrain_vision_tower(
        model.model.vision_tower,
        cfg.model.vision_feature_layer,
        (x, y_tok, y_col),
        vp,
        n_tokens=len(vocab),
        n_colours=len(COLOUR_CLASSES),
        evaluation=evaluation,
        digit_ids={i for w, i in vocab.items() if w.isdigit()},
        log_metrics=lambda m, step: tracker.log_metrics(m, step=step),
    )
    stats.update({"images": len(x), "token_classes": len(vocab), "skipped": len(errors)})
    log.info("vision pretraining: %s", stats)
    return stats


def describe_eval(cfg: Config, model, processor) -> dict[str, float]:
    """Greedy descriptions of up to ``eval_images`` distinct eval images, scored against the truth."""
    records = load_records(cfg.eval_records)
    # distinct images, taken round-robin over datasets so every family is measured
    seen: set[str] = set()
    by_ds: dict[str, list[VQARecord]] = {}
    for r in sorted(records, key=lambda r: r.id):
        if r.image in seen or not isinstance((r.meta or {}).get("description"), str):
            continue
        seen.add(r.image)
        by_ds.setdefault(r.dataset, []).append(r)
    picked: list[VQARecord] = []
    for i in range(max((len(v) for v in by_ds.values()), default=0)):
        picked += [v[i] for _, v in sorted(by_ds.items()) if i < len(v)]
    picked = picked[: cfg.eval_images]
    backend = HFBackend(model, processor, root=cfg.root)
    outs = backend.generate([GenRequest(r.id, r.image, GENERAL_PROMPT) for r in picked], cfg.generation)
    preds = []
    for r, o in zip(picked, outs, strict=True):
        s = description_scores(o.texts[0], r.meta["description"])
        preds.append({"id": r.id, "dataset": r.dataset, "image": r.image, "prediction": o.texts[0],
                      "reference": r.meta["description"], **s})
    write_jsonl(cfg.predictions, preds, sort_key="id")
    def mean(ps: list[dict], key: str) -> float:
        vals = [p[key] for p in ps if p[key] is not None]
        return statistics.fmean(vals) if vals else 0.0

    out = {"desc.n": len(preds)}
    for ds in [None, *sorted({p["dataset"] for p in preds})]:
        ps = [p for p in preds if ds is None or p["dataset"] == ds]
        prefix = "desc." if ds is None else f"desc.{ds}."
        out[prefix + "exact"] = mean(ps, "exact")
        out[prefix + "fact_recall"] = mean(ps, "fact_recall")
        # share of distinct descriptions: near 1/n means the model writes the same text whatever the
        # image shows (image-blind), which fact recall alone hides behind the shared boilerplate
        out[prefix + "distinct"] = len({p["prediction"] for p in ps}) / len(ps) if ps else 0.0
        if any(p["value_recall"] is not None for p in ps):
            out[prefix + "value_recall"] = mean(ps, "value_recall")
    return out
