"""`tokenizer train` reads the text field of JSONL files (what `data clean` writes), not
the JSON syntax around it."""

import json

from clean_corpus import CLEAN

from t5x_like.data import tokenizer


def test_tokenizer_trains_on_the_jsonl_field(tmp_path):
  rows = [{"text": CLEAN.replace("library", f"library{i}"), "url": "http://x.example/"} for i in range(40)]
  (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
  path = tokenizer.train_sentencepiece(str(tmp_path / "a.jsonl"), 400, str(tmp_path / "m.model"),
                                       hard_vocab_limit=False)
  import sentencepiece
  sp = sentencepiece.SentencePieceProcessor(model_file=path)
  pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_byte(i)}
  assert "▁the" in pieces
  assert not any("text" in p or "http" in p or "{" in p or '"' in p for p in pieces)
  card = json.load(open(tokenizer.card_path_for(path)))
  assert card["lines_used"] == 40
