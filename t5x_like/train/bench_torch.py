"""The PyTorch side of `t5x-like bench --compare-torch`: the Hugging Face model of the same
family and shape (Llama for a SwiGLU decoder, GPT-2 for another decoder, BERT for the
encoder, T5 for the encoder-decoder), trained with AdamW in float32 with dropout off on
random tokens, timed the same way as our step (warm-up steps untimed, the median of the
rest). It runs in a child process so that PyTorch's and XLA's thread pools never share the
cores at the same time:

  python -m t5x_like.train.bench_torch '{"family": "decoder", "d_model": 256, ...}'

prints one JSON line. Needs PyTorch and transformers (the `test` extra pins both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

WARMUP_STEPS = 2


def shape_of(cfg, batch: int, seq: int, targets: int, steps: int) -> dict:
  """What the PyTorch side needs of our config (a ModelConfig) as plain JSON."""
  return {"family": cfg.family, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "num_layers": cfg.num_layers,
          "num_decoder_layers": cfg.num_decoder_layers or cfg.num_layers, "num_heads": cfg.num_heads,
          "num_kv_heads": cfg.num_kv_heads or cfg.num_heads, "head_dim": cfg.head_dim or cfg.d_model // cfg.num_heads,
          "d_ff": cfg.d_ff, "max_len": cfg.max_len, "type_vocab_size": cfg.type_vocab_size,
          "mlp_activation": cfg.mlp_activation, "tie_embeddings": cfg.tie_embeddings,
          "batch": batch, "seq": seq, "targets": targets, "steps": steps}


def _model(s: dict):
  import transformers as T

  common = dict(vocab_size=s["vocab_size"])
  if s["family"] == "decoder" and s["mlp_activation"] == "swiglu":
    return T.LlamaForCausalLM(T.LlamaConfig(
        **common, hidden_size=s["d_model"], intermediate_size=s["d_ff"], num_hidden_layers=s["num_layers"],
        num_attention_heads=s["num_heads"], num_key_value_heads=s["num_kv_heads"], head_dim=s["head_dim"],
        max_position_embeddings=s["max_len"], tie_word_embeddings=s["tie_embeddings"],
        attention_dropout=0.0)), "Llama"
  if s["family"] == "decoder":
    return T.GPT2LMHeadModel(T.GPT2Config(
        **common, n_embd=s["d_model"], n_layer=s["num_layers"], n_head=s["num_heads"], n_inner=s["d_ff"],
        n_positions=s["max_len"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=s["tie_embeddings"])), "GPT-2"
  if s["family"] == "encoder":
    return T.BertForMaskedLM(T.BertConfig(
        **common, hidden_size=s["d_model"], num_hidden_layers=s["num_layers"], num_attention_heads=s["num_heads"],
        intermediate_size=s["d_ff"], max_position_embeddings=s["max_len"], type_vocab_size=max(s["type_vocab_size"], 1),
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)), "BERT"
  gated = s["mlp_activation"] in ("gated_gelu", "swiglu")
  config = T.T5Config(
      **common, d_model=s["d_model"], d_kv=s["head_dim"], d_ff=s["d_ff"], num_layers=s["num_layers"],
      num_decoder_layers=s["num_decoder_layers"], num_heads=s["num_heads"], dropout_rate=0.0,
      feed_forward_proj="gated-gelu" if gated else "relu", decoder_start_token_id=0, pad_token_id=0)
  # transformers 5 sets T5's tie_word_embeddings in the constructor whatever it is given,
  # and untied it also gives the encoder and the decoder their own input tables: one shared
  # table as ours (and T5's checkpoints) have.
  config.tie_word_embeddings = s["tie_embeddings"]
  model = T.T5ForConditionalGeneration(config)
  model.encoder.set_input_embeddings(model.shared)
  model.decoder.set_input_embeddings(model.shared)
  return model, "T5"


def run(s: dict) -> dict:
  import torch

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  model, name = _model(s)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  gen = torch.Generator().manual_seed(0)
  tokens = lambda n: torch.randint(3, s["vocab_size"], (s["batch"], n), generator=gen)
  if s["family"] == "encoder_decoder":
    batches = [{"input_ids": tokens(s["seq"]), "labels": tokens(s["targets"])} for _ in range(2)]
  else:
    batches = [{"input_ids": t, "labels": t} for t in (tokens(s["seq"]), tokens(s["seq"]))]
  times = []
  for i in range(WARMUP_STEPS + s["steps"]):
    t0 = time.perf_counter()
    loss = model(**batches[i % 2]).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if i >= WARMUP_STEPS:
      times.append(time.perf_counter() - t0)
  times.sort()
  step = times[len(times) // 2]
  n_tokens = s["batch"] * (s["seq"] + s["targets"])
  return {"torch_model": name, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
          "torch_params": sum(p.numel() for p in model.parameters()), "torch_step_ms": round(1e3 * step, 2),
          "torch_step_ms_min": round(1e3 * times[0], 2), "torch_step_ms_max": round(1e3 * times[-1], 2),
          "torch_tokens_per_s": round(n_tokens / step, 1)}


def compare(shape: dict) -> dict:
  """Runs `run(shape)` in a child process and returns its figures; a missing PyTorch or
  transformers is one plain error."""
  from t5x_like import host_memory
  proc = subprocess.run([sys.executable, "-m", "t5x_like.train.bench_torch", json.dumps(shape)],
                        capture_output=True, text=True, env=host_memory.child_env())  # our heap on both sides
  if proc.returncode:
    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise RuntimeError(f"the PyTorch side of --compare-torch failed: {last}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
  except ImportError as e:
    print(f"--compare-torch needs PyTorch and transformers ({e}): pip install -e \".[test]\"", file=sys.stderr)
    return 2
  print(json.dumps(run(json.loads(argv[0]))), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
