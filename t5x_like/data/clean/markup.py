"""Markup and noise: HTML to text with the standard library's parser (tags dropped, text of
script/style dropped, entities decoded, block elements end lines), URLs, e-mail addresses
and runs of symbols. URLs and addresses are patterns of characters, not nested
structures, so a regular expression is the right tool for them; HTML is not."""

from __future__ import annotations

import html.parser
import re

# Unicode quotes, the ellipsis and CJK or full-width punctuation end a URL in running text.
URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"'\u2018-\u201f\u2026\u3000-\u303f\uff00-\uffef]+",
                 re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# 4+ characters in a row that are neither letters, digits, whitespace nor ordinary prose
# punctuation, or one punctuation character repeated 5+ times ("-----", "!!!!!!").
SYMBOL_RUN = re.compile(r"[^\w\s.,;:!?'\"()\[\]%&/-]{4,}|([^\w\s])\1{4,}")
# Text is taken for HTML when it has what only markup has: an end tag or a void element of
# HTML, a doctype, a comment, or an entity. A start tag alone is not enough: "a<b and b>c"
# or "if (a<b && c>d)" in prose would parse as a <b> element and lose its words.
_ELEMENTS = ("a|abbr|address|article|aside|b|blockquote|body|button|caption|center|cite|code|dd|del|details|"
             "div|dl|dt|em|figcaption|figure|font|footer|form|h[1-6]|head|header|html|i|iframe|ins|kbd|label|"
             "legend|li|main|mark|nav|noscript|ol|option|p|pre|q|s|script|section|select|small|span|strong|"
             "style|sub|summary|sup|svg|table|tbody|td|textarea|tfoot|th|thead|title|tr|tt|u|ul|var")
_HTML_HINT = re.compile(r"</(?:" + _ELEMENTS + r")\s*>|<(?:br|hr|img|meta|link|input|wbr)\b[^<>]*>|<!doctype\b|"
                        r"<!--|&(?:[A-Za-z]{2,8}|#\d{1,7}|#x[0-9A-Fa-f]{1,6});", re.IGNORECASE)
# Pages whose elements are never closed (`<P>one<P>two`, `<li>a<li>b`): two start tags of
# HTML elements make markup; one alone ("3 <p> 4") is still prose.
_START_TAG = re.compile(r"<(?:" + _ELEMENTS + r")(?:\s+[\w:-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s<>]+))?)*\s*/?>",
                        re.IGNORECASE)

_SKIP = {"script", "style", "noscript", "template", "svg"}
_BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
          "section", "article", "header", "footer", "blockquote", "pre", "hr", "title", "dd", "dt", "dl",
          "nav", "aside", "main", "figure", "figcaption", "form", "fieldset", "legend", "details", "summary",
          "address", "caption", "thead", "tbody", "tfoot", "option", "body", "center"}
_CELL = {"td", "th"}  # cells of a row: a space between them, the row ends the line
# What may stand in <head>; any other element (or <body>) ends it, closed or not, as in HTML5.
_HEAD = {"title", "meta", "link", "base", "script", "style", "noscript", "template"}


class _TextOf(html.parser.HTMLParser):
  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.parts: list[str] = []
    self.skipping = 0
    self.in_head = False  # the head's text (its title) is not the page's text

  def handle_starttag(self, tag, attrs):
    if tag == "head":
      self.in_head = True
    elif self.in_head and tag not in _HEAD:
      self.in_head = False
    if tag in _SKIP:
      self.skipping += 1
    elif tag == "body":
      self.skipping = 0  # whatever was left open before the body (an unclosed <script>) ends here
      self.parts.append("\n")
    elif tag in _BLOCK:
      self.parts.append("\n")
    elif tag in _CELL:
      self.parts.append(" ")

  def handle_startendtag(self, tag, attrs):
    if tag in _BLOCK:
      self.parts.append("\n")

  def handle_endtag(self, tag):
    if tag == "head":
      self.in_head = False
    if tag in _SKIP:
      self.skipping = max(0, self.skipping - 1)
    elif tag in _BLOCK:
      self.parts.append("\n")
    elif tag in _CELL:
      self.parts.append(" ")

  def handle_data(self, data):
    if not self.skipping and not self.in_head:
      self.parts.append(data)


def looks_like_html(text: str) -> bool:
  if not ("<" in text or "&" in text):
    return False
  if _HTML_HINT.search(text) is not None:
    return True
  tags = _START_TAG.finditer(text)
  return next(tags, None) is not None and next(tags, None) is not None


def html_to_text(text: str) -> str:
  """The readable text of an HTML document or fragment; text without tags or entities
  comes back unchanged (the parser is not run on it)."""
  if not looks_like_html(text):
    return text
  parser = _TextOf()
  parser.feed(text)
  parser.close()
  return "".join(parser.parts)


def _url_tail(m: re.Match) -> str:
  """What follows a URL in prose is not part of it: trailing punctuation, and a closing
  bracket the URL did not open ("(see https://x.org/a)." keeps ")."). Returns that tail."""
  url = m.group(0)
  end = len(url)
  while end:
    c = url[end - 1]
    if c in ".,;:!?'\"":
      end -= 1
    elif c in ")]}" and url[:end].count(c) > url[:end].count({")": "(", "]": "[", "}": "{"}[c]):
      end -= 1
    else:
      break
  return url[end:]


def strip_noise(text: str, *, urls: bool, emails: bool, symbol_runs: bool) -> str:
  if urls:
    text = URL.sub(_url_tail, text)
  if emails and "@" in text:
    text = EMAIL.sub("", text)
  if symbol_runs:
    text = SYMBOL_RUN.sub("", text)
  return text


__all__ = ["EMAIL", "URL", "html_to_text", "looks_like_html", "strip_noise"]
