"""TFDS datasets, prepared ahead (`t5x-like data build`, or `tfds build` elsewhere); nothing
is ever downloaded. Each host reads an even share of the split's examples
(`tfds.split_for_jax_process`), so every example is read once per epoch for any host count.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data import long_documents  # noqa: E402
from t5x_like.data.readers import checks  # noqa: E402
from t5x_like.data.readers.base import FILE_CYCLE, Input, Reader, Share  # noqa: E402
from t5x_like.data.readers.files import NOT_UTF8  # noqa: E402
from t5x_like.data.readers.tfrecord import TFRecordReader  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

BUILD_HINT = "t5x-like data build --input GLOB --name NAME --data-dir DIR"


def tfds_builder(cfg):
  """The prepared TFDS builder of `data.tfds.name` (name[/config][:version]) in
  `data.tfds.data_dir`. Unprepared data is a DataError."""
  import tensorflow_datasets as tfds  # slow import, only for this source

  name, data_dir = cfg.tfds.name, cfg.tfds.data_dir or None
  where = f"data_dir {data_dir!r}" if data_dir else "the default TFDS data_dir (data.tfds.data_dir is empty)"
  fix = (f"prepare it offline with `{BUILD_HINT}` (text/JSONL) or `tfds build` on a machine "
         "with internet, then set data.tfds.name and data.tfds.data_dir")
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f"TFDS dataset {name!r} (data.tfds.name) is neither in {where} nor in the "
                    f"TFDS catalog; {fix}") from None
  except (ValueError, AssertionError) as e:  # a malformed name, an unknown config or version
    raise DataError(f"TFDS dataset {name!r} (data.tfds.name) in {where}: "
                    f"{str(e).splitlines()[0]}") from None
  if not builder.is_prepared():
    raise DataError(f"TFDS dataset {name!r} (data.tfds.name) is not prepared in {builder.data_dir} "
                    f"and is never downloaded at run time; {fix}")
  return builder


def plain_text_shards(builder, key: str) -> bool:
  """True when the split is TFRecord shards of tf.train.Example with the text as a plain
  bytes feature `key` (what `t5x-like data build` writes). Those are read by the TFRecord
  reader, parsed in blocks, from TFDS's own file instructions: `as_dataset` parses one
  example per call, which made the pipeline 4x slower on 2 cores."""
  import tensorflow_datasets as tfds

  feature = builder.info.features[key]
  return (builder.info.file_format in (None, tfds.core.FileFormat.TFRECORD)
          and type(feature) is tfds.features.Text and feature.encoder is None)


class TfdsReader(Reader):
  def input_for(self, role: str, files: str = "") -> Input:
    t = self.cfg.tfds
    split = t.train_split if role == "train" else t.eval_split
    return Input(files="", split=split, key=f"{self.key_prefix}tfds.{role}_split")

  def describe(self, inp: Input) -> str:
    return f"{inp.key} {self.cfg.tfds.name}[{inp.split}]"

  def _share(self, builder, inp: Input, share: Share) -> str | None:
    """The split of this host's examples; None when it has none (more hosts than examples)."""
    import tensorflow_datasets as tfds

    name, split = self.cfg.tfds.name, inp.split
    try:
      total = builder.info.splits[split].num_examples
    except (ValueError, KeyError) as e:
      raise DataError(f"TFDS dataset {name!r}: split {split!r} ({inp.key}): {e}") from None
    if total == 0:
      raise DataError(f"split {split!r} of TFDS dataset {name!r} is empty")
    mine = tfds.split_for_jax_process(split, process_index=share.process_index,
                                      process_count=share.process_count)
    if builder.info.splits[mine].num_examples:
      return mine
    if share.repeat:  # a training stream would end at once
      raise DataError(f"split {split!r} of TFDS dataset {name!r} has {total} examples, "
                      f"fewer than the {share.process_count} hosts reading it")
    return None

  def mean_document_bytes(self, inp: Input, share: Share) -> float | None:
    """The split's bytes per example from the dataset's info (all its features), at most
    `long_documents.LONG_DOC_BYTES`; None when the info has no byte count."""
    del share
    try:
      split = tfds_builder(self.cfg).info.splits[inp.split]
    except (ValueError, KeyError):
      return None
    if not split.num_bytes or not split.num_examples:
      return None
    return min(split.num_bytes / split.num_examples, long_documents.LONG_DOC_BYTES)

  def _probe(self, builder, split: str, key: str, inp: Input) -> None:
    """This host's examples must hold a document (a stream of blank texts repeats forever);
    reads examples until one does."""
    for example in builder.as_dataset(split=split, shuffle_files=False):
      text = example[key].numpy()
      try:
        if text.decode("utf-8").strip():
          return
      except UnicodeDecodeError:
        continue
    raise DataError(f"TFDS dataset {self.cfg.tfds.name!r} [{split}] ({inp.key}) holds no document: every "
                    f"{key!r} is blank or not UTF-8")

  def read(self, inp: Input, share: Share, counter, name: str) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    builder = tfds_builder(self.cfg)
    key = self.cfg.tfds.text_key
    features = builder.info.features
    if key not in features or getattr(features[key], "tf_dtype", None) != tf.string:
      have = ", ".join(f"{k} ({getattr(getattr(v, 'tf_dtype', None), 'name', type(v).__name__)})"
                       for k, v in features.items())
      raise DataError(f"TFDS dataset {self.cfg.tfds.name!r} has no string feature {key!r} "
                      f"({self.key_prefix}tfds.text_key); it has: {have}")
    mine = self._share(builder, inp, share)
    if mine is None:
      return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
    self._probe(builder, mine, key, inp)
    if plain_text_shards(builder, key):
      instructions = builder.info.splits[mine].file_instructions
      shards = TFRecordReader(self.cfg, self.key_prefix, feature=key)
      return shards.read_files([os.fspath(i.filename) for i in instructions],
                               Share(0, 1, share.shuffle, share.repeat, share.seed), counter, name,
                               ranges=[(i.skip, i.take) for i in instructions])
    read_config = tfds.ReadConfig(
        shuffle_seed=share.seed, shuffle_reshuffle_each_iteration=True, try_autocache=False,
        skip_prefetch=True, add_tfds_id=counter is None,
        # Evaluation reads the shards in order; training interleaves a few, like files.
        interleave_cycle_length=FILE_CYCLE if share.shuffle else 1)
    ds = builder.as_dataset(split=mine, shuffle_files=share.shuffle, read_config=read_config)
    wanted = [key] + (["tfds_id"] if counter is None else [])
    ds = ds.map(lambda ex: {k: ex[k] for k in wanted})  # other features may not batch
    if share.repeat:
      ds = ds.repeat()

    def check(block):
      def locate(j):  # tfds_id names the shard file and the record in it
        return tf.strings.join([f"TFDS dataset {self.cfg.tfds.name} [{inp.split}] record ",
                                block["tfds_id"][j]])

      docs = block[key]
      docs = checks.check_block(docs, ~checks.is_utf8(docs), locate=locate, why=NOT_UTF8,
                                counter=counter, name=name)
      return long_documents.cut(docs) if share.shuffle else docs

    return ds.batch(checks.CHECK_BLOCK).map(check).unbatch()


__all__ = ["BUILD_HINT", "TfdsReader", "plain_text_shards", "tfds_builder"]
