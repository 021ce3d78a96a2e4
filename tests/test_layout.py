"""The package keeps the shape described in docs/architecture.md: one concept per file
(at most 350 lines), a training `run` that reads in one screen, and the batch features
spelled in t5x_like/features.py only (everything else uses its constants)."""

import ast
import pathlib

from t5x_like import features

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "t5x_like"
FEATURE_NAMES = {getattr(features, n) for n in dir(features)
                 if n.isupper() and isinstance(getattr(features, n), str)}
# Pieces that only a feature name contains: a string holding one builds a name by hand.
FEATURE_PIECES = ("_input_tokens", "_target_tokens", "_loss_weights")


def _modules():
  return sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_350_lines():
  long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 350}
  assert not long, f"split these by concept: {long}"


def test_training_run_is_short():
  tree = ast.parse((PACKAGE / "train" / "loop.py").read_text())
  run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
  assert run.end_lineno - run.lineno + 1 < 80


def _docstrings(tree) -> set[int]:
  """ids of the docstring constants (prose may name features)."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
      first = node.body[0]
      if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        out.add(id(first.value))
  return out


def test_feature_names_are_spelled_in_features_py_only():
  assert len(FEATURE_NAMES) >= 14 and "decoder_target_tokens" in FEATURE_NAMES
  found = []
  for path in _modules():
    if path.name == "features.py" and path.parent == PACKAGE:
      continue
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    for node in ast.walk(tree):
      if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
        if node.value in FEATURE_NAMES or any(piece in node.value for piece in FEATURE_PIECES):
          found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
  assert not found, "use the constants of t5x_like/features.py:\n" + "\n".join(found)
