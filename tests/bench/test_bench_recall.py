"""bench/bench_recall.py: every example's answer is retrievable from its prefix, and the score needs every
answer token (the embedded tokenizer splits " 4" into " " and "4": a model that only predicts the space
must score 0, which a first-token check did not)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_recall import WordTok, accuracy, examples, task_of, token_examples  # noqa: E402


def test_each_query_has_one_answer_in_its_prefix():
    for prefix, answer in examples(300, seed=3) + examples(300, seed=6, queries=3):
        if "\n" in prefix:  # option: "A. x\nB. y\nC. z\nD. w\nThe option for y is" -> "B"
            *lines, query = prefix.split("\n")
            key = query.removeprefix("The option for ").removesuffix(" is")
            assert [ln[:1] for ln in lines if ln[3:] == key] == [answer]
        else:  # kv: "oat is 3, nut is 9 and plum is 4. [The value of oat is 3.] The value of nut is" -> "9"
            listing, *asked = prefix.split(". The value of ")
            table = dict(p.split(" is ") for p in listing.replace(" and ", ", ").split(", "))
            keys = [a.split(" is")[0] for a in asked]
            assert len(table) == len(listing.replace(" and ", ", ").split(", ")) and len(set(keys)) == len(keys)
            assert all(table[a.split(" is ")[0]] == a.split(" is ")[1] for a in asked[:-1])
            assert table[keys[-1]] == answer


class CharTok:
    """One token per character, so " 4" is two tokens, as in the embedded BPE."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class Predicts:
    """A model whose next token is ``fn(ids so far)``."""

    def __init__(self, fn):
        self.fn = fn

    def eval(self):
        return self

    def train(self):
        return self

    def __call__(self, input_ids):
        ids = input_ids[0].tolist()
        logits = torch.zeros(1, len(ids), 256)
        logits[0, -1, self.fn(ids)] = 1.0

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_score_needs_every_answer_token():
    held = examples(60, seed=4)
    truth = {prefix: f"{prefix} {answer}" for prefix, answer in held}

    def oracle(ids):
        text = "".join(map(chr, ids))
        full = next(f for f in truth.values() if f.startswith(text) and len(f) > len(text))
        return ord(full[len(text)])

    assert accuracy(Predicts(oracle), CharTok(), held) == {"kv": 100.0, "option": 100.0}
    assert accuracy(Predicts(lambda ids: ord(" ")), CharTok(), held) == {"kv": 0.0, "option": 0.0}


def test_token_tasks_answer_from_the_prefix_and_queries_are_distinct():
    seen = set()
    for prefix, answer in token_examples(400, seed=5, keys=(3, 6), queries=3):
        seen.add(task_of(prefix))
        if task_of(prefix) == "repeat":  # "t5 t9 t2 | t5 t9" -> "t2"
            first, again = prefix.split(" | ")
            assert first.split()[len(again.split())] == answer
        else:  # "k1 v3 , k4 v7 ? k4 v7 ? k1" -> "v3": the listing's value, and no key asked twice
            listing, *asked = prefix.split(" ? ")
            table = dict(p.split() for p in listing.split(" , "))
            keys = [a.split()[0] for a in asked]
            assert len(set(keys)) == len(keys)
            assert all(a.split()[1] == table[a.split()[0]] for a in asked[:-1])
            assert table[keys[-1]] == answer
    assert seen == {"repeat", "kv_tokens"}


def test_gap_puts_fillers_between_key_and_value_in_listing_and_query():
    for prefix, answer in token_examples(200, seed=7, queries=2, gap=2):
        if task_of(prefix) != "kv_tokens":
            continue
        listing, *asked = prefix.split(" ? ")
        pairs = [p.split() for p in listing.split(" , ")]
        assert all(len(p) == 4 and p[1:3] == ["=", "="] for p in pairs)
        assert asked[-1].split()[1:] == ["=", "="]  # the query ends on the fillers: the value is 3 tokens on
        assert dict((p[0], p[3]) for p in pairs)[asked[-1].split()[0]] == answer


def test_adjacent_words_put_the_value_right_after_its_key():
    seen = set()
    for prefix, answer in examples(300, seed=8, queries=3, adjacent=True, repeat=0.3):
        seen.add(task_of(prefix))
        if task_of(prefix) == "repeat":  # "leaves rice ... | leaves rice" -> the next word
            first, again = prefix.split(" | ")
            assert first.split()[len(again.split())] == answer
        elif task_of(prefix) == "option":  # "snail A\nfrog B\n...\nfrog" -> "B"
            *lines, key = prefix.split("\n")
            assert [ln.rsplit(" ", 1)[1] for ln in lines if ln.rsplit(" ", 1)[0] == key] == [answer]
        else:  # "cod 3, nut 5 and fig 5. fig 5. cod" -> "3"
            listing, *asked = prefix.split(". ")
            table = dict(p.split() for p in listing.replace(" and ", ", ").split(", "))
            assert all(table[a.split()[0]] == a.split()[1] for a in asked[:-1])
            assert table[asked[-1]] == answer
    assert seen == {"repeat", "option", "kv"}
    assert examples(50, seed=8, queries=2) == examples(50, seed=8, queries=2, repeat=0.0)


def test_word_tokenizer_gives_one_id_per_word():
    tok = WordTok()
    a = tok("k1 v3 , k1")["input_ids"]
    assert len(a) == 4 and a[0] == a[3] and min(a) > tok.eos_token_id
    assert len(tok("nut is 4. The value of nut is 4")["input_ids"]) == 10  # "4" and "." apart


def test_recall_pretraining_moves_the_language_model_only():
    from bench_recall import pretrain_recall_ids

    from vlmcot.models import TinyLlavaConfig, build_tiny_llava, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["oat is 3, nut is 9 and plum is 4. The value of nut is 9?"] * 4, vocab_size=300)
    model = build_tiny_llava(TinyLlavaConfig(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1,
                                             vision_heads=2, text_hidden=32, text_layers=1, text_heads=2,
                                             text_intermediate=64, max_position=128, vocab_size=300), tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    acc = pretrain_recall_ids(model, list(range(100, 130)), list(range(30, 39)), 10, 11, steps=3, batch=4)
    assert 0.0 <= acc <= 100.0
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any("language_model" in n for n in moved)
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in moved)
