"""The training order of file sources: every part of the input read at once, so that at
every step the documents come from the whole input, whatever the file order and size.

A shuffle buffer alone is a local shuffle: on one in-order file it holds a window of the
file at a time (a 10,000-document buffer fed a 78k-paragraph manual's last quarter
nothing in 600 steps). tf.data cannot seek into a file (a reader's start offset is read
through, about 0.6 ms per document read at random), so random access per document is out;
instead this host's input is read as STREAMS strata side by side:

1. files larger than twice an even share (input bytes / STREAMS, at least
   MIN_PIECE_BYTES) are cut into pieces at
   line starts, found by one pass over each such file when the pipeline is built; record
   ranges of known length (TFDS shards) are cut by record count; TFRecord files of
   unknown length stay whole;
2. the pieces, in input order, form STREAMS strata of about equal bytes;
3. each epoch, every stratum reads its pieces in a seeded random order, and the strata
   are interleaved GROUP documents at a time, in a seeded random order;
4. the seeded shuffle buffer (`data.shuffle_buffer`) mixes that stream.

A piece read from a byte offset reads through the bytes before it (about 6 GB/s from the
page cache), so an epoch of one large file costs about STREAMS / 2 extra passes over it;
inputs of many files need none. Everything is seeded and stateless or tf.data state, so
the stream is deterministic and `tf.train.Checkpoint(iterator=it)` saves it.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

STREAMS = 128  # strata read side by side: each tenth of the input holds 12 or 13 of them
READ_BYTES = 128 << 10  # bytes read per block when a line file is read by byte range
# Documents taken from a stratum per turn: one element per document through the
# interleave cost 4x the reading time; 128 strata x 16 still mix within a shuffle buffer.
GROUP = 16
# No piece is cut smaller: each costs a few milliseconds to open every epoch, which
# made a test of three tiny files 4x slower; a smaller input fits the shuffle buffer.
MIN_PIECE_BYTES = 16 << 10
_SCAN_BYTES = 16 << 20  # bytes read per call while finding line starts


@dataclasses.dataclass(frozen=True)
class Piece:
  """Part of one file: bytes [start, end) of whole lines (line sources), or records
  skip+1 .. skip+take (take -1: to the end); `skip` is also the number of the line before
  `start`, for error messages."""

  path: str
  size: int
  start: int = 0
  end: int = -1
  skip: int = 0
  take: int = -1


def line_starts(path: str, targets: list[int]) -> list[tuple[int, int]]:
  """(offset, lines before it) of the first line start at or after each sorted byte
  offset in `targets` ((file size, lines) past the last line start)."""
  out, pos, lines, pending = [], 0, 0, list(targets)
  with tf.io.gfile.GFile(path, "rb") as f:
    while pending:
      chunk = f.read(_SCAN_BYTES)
      if not chunk:
        break
      while pending:
        if pending[0] <= 0:
          out.append((0, 0))
          pending.pop(0)
          continue
        # A line starts after every newline: look for one at or after target - 1.
        i = chunk.find(b"\n", max(pending[0] - 1 - pos, 0))
        if i < 0:
          break
        out.append((pos + i + 1, lines + chunk.count(b"\n", 0, i) + 1))
        pending.pop(0)
      lines += chunk.count(b"\n")
      pos += len(chunk)
  return out + [(pos, lines)] * len(pending)


def plan(paths: list[str], sizes: list[int], ranges: list[tuple[int, int]], splittable: bool,
         streams: int = STREAMS) -> list[Piece]:
  """The pieces of the input, in input order: whole files (or the record ranges given),
  with files larger than twice an even share cut at line starts when `splittable`."""
  share = max(sum(sizes) / streams, MIN_PIECE_BYTES)
  pieces = []
  for path, size, (skip, take) in zip(paths, sizes, ranges, strict=True):
    k = round(size / share) if size > 2 * share else 1
    if k > 1 and not splittable and take > 0:  # a known count of records: cut by count
      k = min(k, take)
      pieces += [Piece(path, size, 0, size, skip + take * i // k, take * (i + 1) // k - take * i // k)
                 for i in range(k)]
      continue
    if k <= 1 or not splittable:
      pieces.append(Piece(path, size, 0, size, skip, take))
      continue
    cuts = [(0, 0)] + line_starts(path, [size * i // k for i in range(1, k)]) + [(size, -1)]
    for (start, line), (end, _) in zip(cuts, cuts[1:], strict=False):
      if end > start:  # a line longer than a share leaves no start in the next one
        pieces.append(Piece(path, size, start, end, line, -1))
  return pieces


def strata(pieces: list[Piece], streams: int = STREAMS) -> list[list[int]]:
  """Indices of the pieces in each stratum: consecutive pieces of about equal bytes."""
  nbytes = [(p.end if p.end >= 0 else p.size) - p.start for p in pieces]
  total, groups, before = max(sum(nbytes), 1), [[] for _ in range(streams)], 0
  for i, n in enumerate(nbytes):
    groups[min(int(streams * (before + n / 2) / total), streams - 1)].append(i)
    before += n
  return [g for g in groups if g]


def _fragments() -> tf.TensorArray:
  return tf.TensorArray(tf.string, size=0, dynamic_size=True, element_shape=[])


def line_blocks(path, start, end, size) -> tf.data.Dataset:
  """The lines of bytes [start, end) of a file (whole lines), as TextLineDataset gives
  them (a "\\r" before the "\\n" dropped), in 1-D blocks with the number of lines before
  each: read READ_BYTES at a time, each block's unfinished last line carried to the next.

  The carry is a list of the line's fragments, joined once when its newline comes: joining
  it to each block in turn copied a line spanning k blocks k times, so a 48 MB line (370
  blocks) took minutes of copying before its first token."""
  start, end, size = (tf.cast(x, tf.int64) for x in (start, end, size))
  n = end - start
  whole = n // READ_BYTES
  rest = n - whole * READ_BYTES
  body = tf.data.FixedLengthRecordDataset(path, READ_BYTES, header_bytes=start,
                                          footer_bytes=size - start - whole * READ_BYTES, buffer_size=READ_BYTES)
  # A 1-byte record over an empty body reads nothing when the range is whole blocks.
  tail = tf.data.FixedLengthRecordDataset(path, tf.maximum(rest, 1), header_bytes=start + whole * READ_BYTES,
                                          footer_bytes=size - end, buffer_size=READ_BYTES)
  marked = body.concatenate(tail).map(lambda b: (b, False))
  marked = marked.concatenate(tf.data.Dataset.from_tensors((tf.constant(""), True)))

  def split(state, element):
    carry, before = state
    block, last = element
    parts = tf.strings.split(block, "\n")
    ends = tf.logical_or(tf.size(parts) > 1, last)  # the carried line ends in this block

    def finish():
      # The carried line's first fragment, its others and the block's first part, joined.
      head = tf.strings.reduce_join(tf.concat([carry.stack(), parts[:1]], 0))
      joined = tf.concat([[head], parts[1:]], 0)
      final = tf.cond(tf.strings.length(joined[-1]) > 0, lambda: joined[-1:], lambda: joined[:0])
      lines = tf.strings.regex_replace(tf.cond(last, lambda: final, lambda: joined[:-1]), "\r$", "")
      rest = tf.cond(last, lambda: parts[:0], lambda: parts[-1:])
      return _fragments().unstack(rest), lines

    def extend():  # no newline in the block: one more fragment of the carried line
      return carry.write(carry.size(), parts[0]), parts[:0]

    carry, lines = tf.cond(ends, finish, extend)
    after = before + tf.size(lines, out_type=tf.int64)
    return (carry, after), (before, lines)

  return marked.scan((_fragments(), tf.constant(0, tf.int64)), split)


def _groups(block: tf.Tensor) -> tf.data.Dataset:
  """A block of documents as consecutive groups of at most GROUP."""
  n = tf.size(block, out_type=tf.int64)
  splits = tf.concat([tf.range(0, n, GROUP), [n]], 0)
  return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_splits(block, splits, validate=False))


def interleaved(pieces: list[Piece], groups: list[list[int]], read, seed: int, repeat: bool) -> tf.data.Dataset:
  """The documents of `pieces`, epoch after epoch (one when not `repeat`): each epoch the
  strata `groups` are read side by side, GROUP documents each in turn, in a seeded order,
  and each stratum reads its pieces in a seeded order. `read(path, start, end, skip, take,
  size)` gives one piece's documents in 1-D blocks."""
  cols = {f.name: tf.constant([getattr(p, f.name) for p in pieces],
                              tf.string if f.name == "path" else tf.int64) for f in dataclasses.fields(Piece)}
  width = max(len(g) for g in groups)
  members = tf.constant([g + [0] * (width - len(g)) for g in groups], tf.int64)
  counts = tf.constant([len(g) for g in groups], tf.int64)
  n = len(groups)

  def piece(i):
    return read(*(cols[k][i] for k in ("path", "start", "end", "skip", "take", "size")))

  def epoch(e):
    seed_of = lambda k: tf.stack([tf.constant(seed, tf.int64), e * (n + 1) + k])  # noqa: E731
    order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed_of(0))

    def stratum(s):
      mine = tf.random.experimental.stateless_shuffle(members[s, :counts[s]], seed_of(s + 1))
      return tf.data.Dataset.from_tensor_slices(mine).flat_map(piece).flat_map(_groups)

    return tf.data.Dataset.from_tensor_slices(order).interleave(stratum, cycle_length=n, block_length=1)

  epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
  return epochs.flat_map(epoch).unbatch()


__all__ = ["MIN_PIECE_BYTES", "READ_BYTES", "STREAMS", "Piece", "interleaved", "line_blocks", "line_starts", "plan", "strata"]
