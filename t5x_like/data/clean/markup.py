"""Markup and noise: HTML to text with the standard library's parser (tags dropped, text of
script/style dropped, entities decoded, block elements end lines), URLs, e-mail addresses
and runs of symbols. URLs and addresses are patterns of characters, not nested
structures, so a regular expression is the right tool for them; HTML is not."""

from __future__ import annotations

import html.parser
import re

URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+", re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# 4+ characters in a row that are neither letters, digits, whitespace nor ordinary prose
# punctuation, or one punctuation character repeated 5+ times ("-----", "!!!!!!").
SYMBOL_RUN = re.compile(r"[^\w\s.,;:!?'\"()\[\]%&/-]{4,}|([^\w\s])\1{4,}")
_HTML_HINT = re.compile(r"<[A-Za-z!/][^>]*>|&(?:[A-Za-z]{2,8}|#\d{1,7}|#x[0-9A-Fa-f]{1,6});")

_SKIP = {"script", "style", "noscript", "template", "head", "svg"}
_BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
          "section", "article", "header", "footer", "blockquote", "pre", "hr", "title", "dd", "dt"}


class _TextOf(html.parser.HTMLParser):
  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.parts: list[str] = []
    self.skipping = 0

  def handle_starttag(self, tag, attrs):
    if tag in _SKIP:
      self.skipping += 1
    elif tag in _BLOCK:
      self.parts.append("\n")

  def handle_startendtag(self, tag, attrs):
    if tag in _BLOCK:
      self.parts.append("\n")

  def handle_endtag(self, tag):
    if tag in _SKIP:
      self.skipping = max(0, self.skipping - 1)
    elif tag in _BLOCK:
      self.parts.append("\n")

  def handle_data(self, data):
    if not self.skipping:
      self.parts.append(data)


def looks_like_html(text: str) -> bool:
  return ("<" in text or "&" in text) and _HTML_HINT.search(text) is not None


def html_to_text(text: str) -> str:
  """The readable text of an HTML document or fragment; text without tags or entities
  comes back unchanged (the parser is not run on it)."""
  if not looks_like_html(text):
    return text
  parser = _TextOf()
  parser.feed(text)
  parser.close()
  return "".join(parser.parts)


def strip_noise(text: str, *, urls: bool, emails: bool, symbol_runs: bool) -> str:
  if urls:
    text = URL.sub("", text)
  if emails and "@" in text:
    text = EMAIL.sub("", text)
  if symbol_runs:
    text = SYMBOL_RUN.sub("", text)
  return text


__all__ = ["EMAIL", "URL", "html_to_text", "looks_like_html", "strip_noise"]
