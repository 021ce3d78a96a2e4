"""BERT base, masked LM on Wikipedia and books (TFDS wikipedia/20230601.en and pg19, both
prepared beforehand), as a stand-in for BERT's Wikipedia + BooksCorpus.

Recipe of Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" (NAACL), appendix A.2: batch 256 sequences of 512 tokens (the paper
uses 128 tokens for the first 90% of the steps; one length is used here), 1,000,000 steps,
Adam lr 1e-4, b1 0.9, b2 0.999, weight decay 0.01, 10,000 warmup steps then linear decay,
15% of tokens selected, 80/10/10 mask/random/keep. Deviations: no next-sentence prediction
(not implemented yet) and pg19 books instead of BooksCorpus.

Meshes (110M parameters: data parallel):
  v5p-64 (32 chips):  --config.mesh.data=32 --config.mesh.fsdp=1 --config.mesh.rules=dp
  v5e-256 (256 chips): --config.mesh.data=256 --config.mesh.rules=dp (batch 256 = 1 per chip)
  8 x H100:           --config.mesh.data=8 --config.mesh.rules=dp
"""

from t5x_like.config import Config, model_preset


def get_config() -> Config:
  cfg = Config(name="bert_base_wiki_books")
  cfg.model = model_preset("bert:bert_base", vocab_size=30_528, dtype="bfloat16")  # 30,522 pieces, padded
  d = cfg.data
  d.source, d.objective, d.seq_len = "tfds", "mlm", 512
  d.tokenizer.path = "gs://YOUR_BUCKET/t5x_like/wiki_books_spm30k.model"  # with a "[MASK]" user symbol
  d.tokenizer.extra_ids = 0
  d.mixture = [{"weight": 0.75, "tfds": {"name": "wikipedia/20230601.en", "text_key": "text",
                                         "eval_split": "train[:1%]", "train_split": "train[1%:]"}},
               {"weight": 0.25, "tfds": {"name": "pg19", "text_key": "book_text"}}]
  o = cfg.optimizer
  o.schedule, o.learning_rate, o.warmup_steps, o.end_lr_fraction = "linear", 1e-4, 10_000, 0.0
  o.b2, o.weight_decay, o.clip_norm = 0.999, 0.01, 1.0
  cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.rules = -1, 1, "dp"
  t = cfg.train
  t.steps, t.batch_size, t.log_every, t.eval_every, t.eval_batches = 1_000_000, 256, 100, 10_000, 20
  t.skill_eval_examples = 0
  cfg.checkpoint.every_steps, cfg.checkpoint.keep_period = 10_000, 100_000
  return cfg
