"""Markup and noise removal, and PII masking."""

from clean_corpus import CLEAN

from t5x_like.data.clean.markup import html_to_text, strip_noise
from t5x_like.data.clean.pii import mask_pii


def _noise(text):
  return strip_noise(text, urls=True, emails=True, symbol_runs=True)


def test_clean_text_passes_untouched():
  assert html_to_text(CLEAN) == CLEAN
  assert _noise(CLEAN) == CLEAN
  assert mask_pii(CLEAN) == CLEAN
  assert html_to_text("a < b and c > d, 5 & 6") == "a < b and c > d, 5 & 6"


def test_html_tags_scripts_and_entities_become_text():
  page = ("<html><head><title>T</title><style>p {color: red}</style></head><body>"
          "<p>Fish &amp; chips &lt;3</p><script>var x = '<p>no</p>';</script>"
          "<div>caf&eacute; &#8364;5<br/>next</div></body></html>")
  text = html_to_text(page)
  assert "color" not in text and "var x" not in text and "<" not in text.replace("<3", "")
  assert "Fish & chips <3" in text and "café €5" in text
  assert text.split() == ["Fish", "&", "chips", "<3", "café", "€5", "next"]


def test_urls_emails_and_symbol_runs_are_removed():
  assert _noise("see https://example.com/a?b=1 or www.foo.org now").split() == ["see", "or", "now"]
  assert _noise("write to jane.doe+x@mail.example.co.uk today").split() == ["write", "to", "today"]
  assert _noise("title ========== body ★★★★★ end !!!!!! ok...").split() == ["title", "body", "end", "ok..."]
  assert _noise("prices: 5%, (a) [b] 3/4 - well; yes!") == "prices: 5%, (a) [b] 3/4 - well; yes!"


def test_pii_masks_emails_and_phone_numbers_but_not_other_numbers():
  text = "Call +1 (555) 123-4567 or 020 7946 0958, mail bob@example.com; paid 1,200 on 2024-01-15 in 1999."
  masked = mask_pii(text)
  assert masked == "Call <PHONE> or <PHONE>, mail <EMAIL>; paid 1,200 on 2024-01-15 in 1999."
  # An IPv4 address is one (it was masked as a phone number when it had 9+ digits); a version
  # number or a decimal is not.
  assert mask_pii("from 192.168.100.200 and 10.0.0.1, v1.2.3.4.5 or 3.14") == "from <IP> and <IP>, v1.2.3.4.5 or 3.14"


def test_html_as_browsers_read_it_and_prose_that_only_looks_like_it():
  """An unclosed <head> (legal HTML5) ends at the first body element instead of hiding the
  page; table cells keep a space between them; comparisons in prose are not tags; a URL's
  trailing punctuation and unopened bracket stay in the sentence."""
  page = "<html><head><title>T</title><meta charset=utf-8><body><p>The page text.</p></body></html>"
  assert html_to_text(page).split() == ["The", "page", "text."]
  assert html_to_text("<html><head><title>T</title><p>No body tag.</p>").split() == ["No", "body", "tag."]
  assert html_to_text("<table><tr><td>Name</td><td>Age</td></tr><tr><th>Ann</th><td>7</td></tr></table>").split() \
      == ["Name", "Age", "Ann", "7"]
  for prose in ("a<b and b>c", "if (a<b && c>d) return;", "x <y> z", "3 <p> 4"):
    assert html_to_text(prose) == prose
  assert html_to_text("x<b>bold</b>y") == "xboldy" and html_to_text("AT&amp;T") == "AT&T"
  assert _noise("see https://x.com/a). Then (https://y.org/b_(c)) and www.z.io, ok") == "see ). Then () and , ok"


def test_pages_that_never_close_their_elements_and_urls_in_unicode_prose():
  """Two start tags of HTML elements make a page even without an end tag; one alone is
  prose. Unicode quotes, the ellipsis and CJK punctuation end a URL; an IPv4 address ending
  a sentence is masked, and a decimal's digits are no phone number."""
  for page, words in (("<P>one<P>two", ["one", "two"]), ("<li>a<li>b", ["a", "b"]),
                      ("<div class=x>Hello<div>World", ["Hello", "World"]), ("<html><body><p>x", ["x"])):
    assert html_to_text(page).split() == words
  assert html_to_text("3 <p> 4") == "3 <p> 4"
  assert _noise("see \u201chttps://x.org/a.\u201d ok") == "see \u201c.\u201d ok"
  assert _noise("\u89c1 https://x.org/a\u3002\u7136\u540e") == "\u89c1 \u3002\u7136\u540e"
  assert _noise("go https://x.org/a\u2026 then") == "go \u2026 then"
  assert mask_pii("Server at 192.168.1.1. Connect to 192.168.100.200.") == "Server at <IP>. Connect to <IP>."
  assert mask_pii("pi 3.14159 26535") == "pi 3.14159 26535"
