"""How many steps the embedded language model needs to learn in-context retrieval, text only (issue #18).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_recall.py [--steps 3000] [--every 250]
        [--sizes 3x192 4x256] [--batch 32] [--lr 2e-3] [--tag recall]

Why: teacher-forced on gold CoT rows (bench/bench_skills.py), the SFT'd model *reads* 83% of the values
it lists but *copies* only 57% of the values it must take back from its own listing, and in the sci
family it answers near chance (25%) although it writes the food chain right: it cannot match an organism
to its option letter a few lines up. Those are in-context retrieval, the skill a pretrained LLM brings.
This bench trains a fresh language model of the base's class (LlamaForCausalLM, the base's tokenizer and
text config, with the sizes given) on two retrieval tasks built from the world's own words, and prints
held-out query accuracy against steps and seconds:

  kv      "oat is 3, nut is 9, plum is 4 and cod is 4. The value of plum is" -> " 4"
  option  "A. snail\\nB. frog\\nC. leaves\\nD. owl\\nThe option for leaves is" -> " C"

``--task tokens`` asks the same of abstract tokens, where no tokenizer splits anything: "repeat" copies a
sequence seen once (plain induction) and "kv" recalls the value written right after a key.

Every token is trained (plain next-token loss, as base.text_pretrain; ``--answer-only``: the answer's
tokens only, the signal an SFT completion loss gives a copy step); only the query's answer is scored,
greedy, every one of its tokens, on 400 held-out sequences. Writes bench.recall.<tag>.<size>.* into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, "bench")
from common import record  # noqa: E402


def kv_example(rng: random.Random, labels: list[str], queries: int = 1, adjacent: bool = False) -> tuple[str, str]:
    n = rng.randint(3, 6)
    keys = rng.sample(labels, n)
    vals = [rng.randint(1, 9) for _ in keys]
    fact, ask = ("{} {}", " {}") if adjacent else ("{} is {}", " The value of {} is")
    pairs = [fact.format(k, v) for k, v in zip(keys, vals)]
    listing = ", ".join(pairs[:-1]) + " and " + pairs[-1]
    qs = rng.sample(range(n), min(queries, n))  # distinct keys, as token_examples
    asked = "".join(f"{ask.format(keys[q])} {vals[q]}." for q in qs[:-1])
    return f"{listing}.{asked}{ask.format(keys[qs[-1]])}", str(vals[qs[-1]])


def option_example(rng: random.Random, words: list[str], adjacent: bool = False) -> tuple[str, str]:
    opts = rng.sample(words, 4)
    q = rng.randrange(4)
    if adjacent:
        return "\n".join(f"{o} {'ABCD'[i]}" for i, o in enumerate(opts)) + f"\n{opts[q]}", "ABCD"[q]
    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(opts))
    return f"{lines}\nThe option for {opts[q]} is", "ABCD"[q]


def examples(n: int, seed: int, queries: int = 1, adjacent: bool = False,
             repeat: float = 0.0) -> list[tuple[str, str]]:
    """``adjacent``: the answer is the token right after the key, in the listing and the query ("oat 3,
    nut 9 and plum 4. plum" -> " 4"; "snail A\\nfrog B ...\\nfrog" -> " B"), as in the token task's kv;
    default: the world's own wording, where one or more tokens sit between ("nut is 9").
    ``repeat``: this share of the sequences is plain induction in world words instead (12 words, "|", the
    first few again -> the next one), as the token task's "repeat"."""
    from vlmcot.world.chart import LABELS
    from vlmcot.world.sci import HABITATS

    organisms = sorted({o for levels in HABITATS.values() for level in levels for o in level})
    rng = random.Random(seed)
    vocab = sorted(set(LABELS) | set(organisms))
    out = []
    for _ in range(n):
        if repeat and rng.random() < repeat:
            seq = [rng.choice(vocab) for _ in range(12)]
            cut = rng.randint(2, 11)
            out.append((" ".join(seq + ["|"] + seq[:cut]), seq[cut]))
        else:
            out.append(kv_example(rng, list(LABELS), queries, adjacent) if rng.random() < 0.5
                       else option_example(rng, organisms, adjacent))
    return out


def token_examples(n: int, seed: int, keys: tuple[int, int] = (3, 6), queries: int = 1,
                   gap: int = 0) -> list[tuple[str, str]]:
    """The same skills on abstract tokens (one token per word, no tokenizer in the way):

      repeat  "t5 t9 t2 ... | t5 t9" -> "t2"          (copy a sequence seen once: plain induction)
      kv      "k12 v3 , k40 v7 , k3 v3 ? k40" -> "v7"  (associative recall, value right after its key)

    ``queries`` > 1 asks several distinct keys in a row ("... ? k3 v3 ? k12 v3 ? k40" -> "v7"), every answer in
    the training text (a denser recall signal under the all-token loss); the held-out sequences ask one key,
    so answering by elimination of the keys already asked cannot score.

    ``gap`` > 0 puts that many "=" tokens between every key and its value, in the listing and the query
    ("k12 = v3 ? k40 =" -> "v7"): the value is no longer the token right after the key, as in the world's
    "nut is 9" / "The value of nut is" -> " 9".
    """
    eq = " =" * gap
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            seq = [f"t{rng.randrange(800)}" for _ in range(12)]
            cut = rng.randint(2, 11)
            out.append((" ".join(seq + ["|"] + seq[:cut]), seq[cut]))
        else:
            ks = rng.sample(range(60), rng.randint(*keys))
            vs = [rng.randrange(9) for _ in ks]
            qs = rng.sample(range(len(ks)), min(queries, len(ks)))  # distinct: no answer is asked twice
            listing = " , ".join(f"k{k}{eq} v{v}" for k, v in zip(ks, vs))
            asked = "".join(f" ? k{ks[q]}{eq} v{vs[q]}" for q in qs[:-1])
            out.append((f"{listing}{asked} ? k{ks[qs[-1]]}{eq}", f"v{vs[qs[-1]]}"))
    return out


class WordTok:
    """One id per word, number or punctuation mark (ids from 3; 0 pad, 2 eos): the token tasks' tokenizer,
    and ``--tokenizer words`` for the world-word tasks, where the embedded BPE splits "nut" into "n" "ut"
    and " 4" into " " "4"."""

    pad_token_id, eos_token_id = 0, 2

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.ids.setdefault(w, 3 + len(self.ids)) for w in re.findall(r"\w+|[^\w\s]", text)]}


def task_of(prefix: str) -> str:
    return "repeat" if " | " in prefix else "kv_tokens" if " ? " in prefix else "option" if "\n" in prefix else "kv"


def accuracy(model, tok, held: list[tuple[str, str]]) -> dict[str, float]:
    """Held-out accuracy (%) per task: vlmcot.training.text.fact_accuracy, the greedy continuation must give
    every answer token (" 4" is two tokens in the embedded BPE: " " and "4")."""
    from vlmcot.training.text import fact_accuracy

    by: dict[str, list[tuple[str, str]]] = {}
    for prefix, answer in held:
        by.setdefault(task_of(prefix), []).append((prefix, answer))
    return {k: round(100 * fact_accuracy(model, tok, facts, bf16=True), 1) for k, facts in by.items()}


def train_steps(model, params, batch_rows, steps: int, lr: float, pad: int, on_step=None) -> None:
    """AdamW on ``params`` for ``steps`` steps, linear warm-up over the first 5% then a constant rate,
    bfloat16 autocast, gradients clipped at 1. ``batch_rows()`` gives one step's (token rows, per-row
    loss start): the rows are right-padded with ``pad``, and tokens before a row's start are not trained.
    ``on_step(step, loss)`` runs after each step."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    model.train()
    for step in range(1, steps + 1):
        rows, starts = batch_rows()
        width = max(map(len, rows))
        x = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        labels = x.masked_fill(x == pad, -100)
        for j, start in enumerate(starts):
            labels[j, :start] = -100
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=x, attention_mask=(x != pad).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step, float(loss.detach()))


def run(size: str, args, tok, text_cfg: dict, train: list[tuple[str, str]], held) -> dict[str, float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    layers, hidden = (int(x) for x in size.split("x"))
    cfg = LlamaConfig(**{**text_cfg, "num_hidden_layers": layers, "hidden_size": hidden,
                         "head_dim": hidden // text_cfg["num_attention_heads"],
                         "intermediate_size": int(hidden * 8 / 3)})
    torch.manual_seed(args.seed)  # the initial weights
    model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    end = "" if isinstance(tok, WordTok) else "."
    rows, starts = [], []
    for p, a in train:
        starts.append(len(tok(p, add_special_tokens=False)["input_ids"]) if args.answer_only else 0)
        rows.append(tok(f"{p} {a}{end}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    gen = random.Random(1 + args.seed)  # the batch order (seed 0: as before the option existed)
    out: dict[str, float] = {"params_m": round(n_params / 1e6, 2)}
    clock = {"t0": time.perf_counter()}

    def batch_rows():
        pick = gen.sample(range(len(rows)), args.batch)
        return [rows[i] for i in pick], [starts[i] for i in pick]

    def on_step(step: int, loss: float) -> None:
        if step % args.every:
            return
        secs = time.perf_counter() - clock["t0"]
        acc = accuracy(model, tok, held)
        print(f"{size} ({out['params_m']}M) step {step:5d} {secs:6.0f} s  loss {loss:.3f}  "
              + "  ".join(f"{k} {v}" for k, v in sorted(acc.items())), flush=True)
        out.update({f"s{step}.{k}": v for k, v in acc.items()})
        out[f"s{step}.seconds"] = round(secs, 1)
        clock["t0"] = time.perf_counter() - secs  # evaluation time is not training time

    train_steps(model, list(model.parameters()), batch_rows, args.steps, args.lr, tok.pad_token_id, on_step)
    return out


def pretrain_recall_ids(model, key_ids: list[int], val_ids: list[int], sep: int, ask: int, steps: int,
                        lr: float = 1e-3, batch: int = 32, queries: int = 4, seed: int = 0) -> float:
    """Train ``model``'s language side in place on key-value recall written directly in token ids (the
    abstract task that formed above: 3-6 keys, ``queries`` distinct ones asked), vision tower and projector
    untouched; returns held-out single-query accuracy (%). Used by bench_learning.py --recall-steps."""
    import torch

    rng = random.Random(seed)

    def seq(q: int) -> tuple[list[int], int]:
        ks = rng.sample(key_ids, rng.randint(3, 6))
        vs = [rng.choice(val_ids) for _ in ks]
        out: list[int] = []
        for k, v in zip(ks, vs):
            out += [k, v, sep]
        qs = rng.sample(range(len(ks)), min(q, len(ks)))
        for i in qs[:-1]:
            out += [ask, ks[i], vs[i]]
        return out + [ask, ks[qs[-1]]], vs[qs[-1]]

    params = [p for n, p in model.named_parameters() if p.requires_grad and "vision_tower" not in n
              and "multi_modal_projector" not in n]

    def batch_rows():
        return [a + [v] for a, v in (seq(queries) for _ in range(batch))], [0] * batch

    train_steps(model, params, batch_rows, steps, lr, pad=0)
    model.eval()
    right = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(400):
            a, v = seq(1)
            right += int(model(input_ids=torch.tensor([a])).logits[0, -1].argmax()) == v
    model.train()
    return 100 * right / 400


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="models/base", help="its tokenizer and text config are used")
    ap.add_argument("--sizes", nargs="+", default=["3x192", "4x256"], help="LAYERSxHIDDEN")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--answer-only", action="store_true", help="loss on the answer tokens only")
    ap.add_argument("--task", choices=["words", "tokens"], default="words",
                    help="words: kv + option in the world's words and tokenizer; tokens: repeat + kv on abstract tokens")
    ap.add_argument("--tokenizer", choices=["base", "words"], default="base",
                    help="words task: the base's BPE, or one token per word / number / punctuation mark")
    ap.add_argument("--keys", type=int, nargs=2, default=[3, 6], help="tokens task: fewest and most keys")
    ap.add_argument("--queries", type=int, default=1,
                    help="kv: distinct keys asked per training sequence (held-out sequences ask one)")
    ap.add_argument("--adjacent", action="store_true", help="words task: the value right after its key")
    ap.add_argument("--repeat", type=float, default=0.0,
                    help="words task: share of plain-induction sequences in world words (the token task: 0.5)")
    ap.add_argument("--gap", type=int, default=0, help="tokens task: filler tokens between key and value")
    ap.add_argument("--seed", type=int, default=0, help="initial weights and batch order (the text is fixed)")
    ap.add_argument("--tag", default="recall")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    import torch
    from transformers import AutoProcessor

    torch.set_num_threads(args.threads)
    text_cfg = json.load(open(os.path.join(args.base, "config.json")))["text_config"]
    text_cfg = {k: v for k, v in text_cfg.items() if k not in ("model_type", "architectures")}
    if args.task == "words":
        tok = AutoProcessor.from_pretrained(args.base).tokenizer if args.tokenizer == "base" else WordTok()
        train = examples(50_000, seed=0, queries=args.queries, adjacent=args.adjacent, repeat=args.repeat)
        held = examples(400, seed=1, adjacent=args.adjacent, repeat=args.repeat)
    else:
        tok = WordTok()
        train, held = (token_examples(50_000, 0, tuple(args.keys), args.queries, args.gap),
                       token_examples(400, 1, tuple(args.keys), gap=args.gap))  # scored on one query: no elimination
    figures: dict[str, float] = {}
    for size in args.sizes:
        figures.update({f"{size}.{k}": v for k, v in run(size, args, tok, text_cfg, train, held).items()})
    if not args.no_record:
        record(f"bench.recall.{args.tag}", figures)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
