"""`t5x-like infer` on GPT-2 and T5 checkpoints converted from Hugging Face (random
weights, tiny configs) returns the greedy tokens of transformers' `generate`, EOS
included; `t5x-like score` on GPT-2 returns transformers' log-likelihood."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from t5x_like.cli import main  # noqa: E402

V = 101
PROMPTS = [[5, 17, 3], [40, 2, 9, 77, 12], [8, 8, 30, 51, 6, 99, 23, 4]]


def _randomise(model, std=0.2):
  """HF's 0.02 init puts every logit near zero and makes argmax ties likely."""
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen) * std
      p.copy_(1.0 + noise if p.ndim == 1 and name.endswith("weight") else noise)
  return model.eval()


def _convert(model, tmp_path):
  src, out = str(tmp_path / "hf"), str(tmp_path / "ckpt")
  model.save_pretrained(src, safe_serialization=True)
  assert main(["convert", "--from-hf", src, "--output", out]) == 0
  return os.path.join(out, "0")


def _infer(step, tmp_path, rows, *flags):
  src, dst = tmp_path / "prompts.jsonl", tmp_path / "out.jsonl"
  src.write_text("".join(json.dumps({"ids": r}) + "\n" for r in rows))
  assert main(["infer", "--checkpoint", step, "--input", str(src), "--output", str(dst), *flags]) == 0
  return [json.loads(line) for line in dst.read_text().splitlines()]


def _until_eos(ids, eos):
  ids = list(ids)
  return (ids[:ids.index(eos)], True) if eos in ids else (ids, False)


def _hf_greedy(model, prompt, n, **kw):
  with torch.no_grad():
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, num_beams=1, **kw)
  return out[0].tolist()


def test_gpt2_infer_and_score_match_transformers(tmp_path):
  T = transformers
  model = _randomise(T.GPT2LMHeadModel(T.GPT2Config(
      vocab_size=V, n_positions=24, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)))
  step = _convert(model, tmp_path)
  n = 8
  # EOS: a token greedy decoding reaches mid-way in the first row, so stopping is tested.
  free = _hf_greedy(model, PROMPTS[0], n, eos_token_id=None, pad_token_id=0)[len(PROMPTS[0]):]
  eos = free[3]
  got = _infer(step, tmp_path, PROMPTS, "--max-new-tokens", str(n), "--eos-id", str(eos))
  for prompt, row in zip(PROMPTS, got, strict=True):
    want = _hf_greedy(model, prompt, n, eos_token_id=eos, pad_token_id=0)[len(prompt):]
    assert (row["ids"], row["finished"]) == _until_eos(want, eos), prompt
    assert row["prompt"] == {"ids": prompt}
  assert got[0]["finished"]

  src, dst = tmp_path / "seqs.jsonl", tmp_path / "scores.jsonl"
  src.write_text("".join(json.dumps({"ids": p}) + "\n" for p in PROMPTS))
  assert main(["score", "--checkpoint", step, "--input", str(src), "--output", str(dst)]) == 0
  scores = [json.loads(line) for line in dst.read_text().splitlines()]
  for prompt, row in zip(PROMPTS, scores, strict=True):
    with torch.no_grad():
      logp = torch.log_softmax(model(torch.tensor([prompt])).logits[0], -1).numpy()
    want = sum(logp[i, prompt[i + 1]] for i in range(len(prompt) - 1))
    assert row["score"] == pytest.approx(float(want), rel=1e-4, abs=1e-4)
    assert row["tokens"] == len(prompt) - 1


def test_t5_infer_matches_transformers(tmp_path):
  T = transformers
  cfg = T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3,
                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=12,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0,
                   eos_token_id=1, pad_token_id=0)
  model = T.T5ForConditionalGeneration(cfg)
  model.lm_head.weight = torch.nn.Parameter(torch.empty(V, 32))  # v1.1: its own head
  model = _randomise(model)
  step = _convert(model, tmp_path)
  n = 7
  got = _infer(step, tmp_path, PROMPTS, "--max-new-tokens", str(n), "--batch-size", "2")
  for prompt, row in zip(PROMPTS, got, strict=True):
    # No KV cache on their side: transformers' T5 cache assumes as many decoder layers as encoder.
    want = _hf_greedy(model, prompt, n, use_cache=False)[1:]  # drop the decoder start token
    assert (row["ids"], row["finished"]) == _until_eos(want, 1), prompt
  assert len({tuple(r["ids"]) for r in got}) == len(got)


def test_mistral_infer_matches_transformers(tmp_path):
  """A Llama-family import: grouped-query attention, RoPE, a sliding window shorter than
  prompt + new tokens, and the declared BOS read before each prompt as the original's
  tokenizer puts it there (`--bos-id auto`), EOS from the checkpoint's config."""
  T = transformers
  cfg = T.MistralConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
                        max_position_embeddings=64, rope_theta=10_000.0, bos_token_id=1, eos_token_id=2,
                        tie_word_embeddings=False)
  model = _randomise(T.MistralForCausalLM(cfg))
  step = _convert(model, tmp_path)
  n = 8
  got = _infer(step, tmp_path, PROMPTS, "--max-new-tokens", str(n))
  wants = [_hf_greedy(model, [1] + p, n, pad_token_id=0)[len(p) + 1:] for p in PROMPTS]
  for prompt, row, want in zip(PROMPTS, got, wants, strict=True):
    assert (row["ids"], row["finished"]) == _until_eos(want, 2), prompt
  assert len({tuple(r["ids"]) for r in got}) == len(got)
  model.config.sliding_window = None  # the window must change some output, or it was not tested
  assert [_hf_greedy(model, [1] + p, n, pad_token_id=0)[len(p) + 1:] for p in PROMPTS] != wants
