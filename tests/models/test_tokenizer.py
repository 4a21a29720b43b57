from vlmcot.models.tokenizer import IMAGE_TOKEN, train_bpe_tokenizer

CORPUS = ["The red bar is 12.", "What is the sum of the bars?", "### Answer: 17", "USER:\nASSISTANT:\n"] * 4


def test_round_trip_and_special_tokens():
    tok = train_bpe_tokenizer(CORPUS, vocab_size=300)
    text = f"{IMAGE_TOKEN}\nWhat is 305 + 17?\n### Answer: 322"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    assert ids[0] == tok.image_token_id == tok.convert_tokens_to_ids(IMAGE_TOKEN)
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"<pad>", "<s>", "</s>"}
    # unseen characters still round-trip (byte-level)
    assert tok.decode(tok("ünïcode ✓", add_special_tokens=False).input_ids) == "ünïcode ✓"


def test_digits_are_single_tokens():
    tok = train_bpe_tokenizer(CORPUS + ["1234 1234 1234"] * 10, vocab_size=300)
    pieces = tok.convert_ids_to_tokens(tok("1234", add_special_tokens=False).input_ids)
    assert pieces == ["1", "2", "3", "4"]
