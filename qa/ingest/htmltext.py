"""Text runs of an HTML page with their exact offsets in the page source.

Passages must satisfy ``page_text[start:end] == passage.text``, so a passage is a run of
character data between two tags, taken verbatim (entities such as ``&amp;`` stay as written).
"""

from __future__ import annotations

from html.parser import HTMLParser

# Content of these elements is never article text.
_SKIP = frozenset({"script", "style", "noscript", "nav", "header", "footer", "head", "template"})


class _Runs(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self.line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.line_starts.append(i + 1)
        self.skip_depth = 0
        self.in_title = False
        self.title: str | None = None
        self.runs: list[tuple[int, int]] = []
        self._run_start: int | None = None
        self._run_end = 0

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def _close_run(self) -> None:
        if self._run_start is not None:
            self.runs.append((self._run_start, self._run_end))
            self._run_start = None

    def _extend(self, length: int) -> None:
        start = self._offset()
        if self.in_title:
            self.title = ((self.title or "") + self.text[start : start + length]).strip() or None
            return
        if self.skip_depth:
            return
        if self._run_start is None:
            self._run_start = start
        self._run_end = start + length

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._close_run()
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP:
            self.skip_depth += 1

    def handle_endtag(self, tag: str) -> None:
        self._close_run()
        if tag == "title":
            self.in_title = False
        elif tag in _SKIP and self.skip_depth:
            self.skip_depth -= 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._close_run()

    def handle_data(self, data: str) -> None:
        self._extend(len(data))

    def handle_entityref(self, name: str) -> None:
        self._extend(len(name) + 2)

    def handle_charref(self, name: str) -> None:
        self._extend(len(name) + 3)

    def handle_comment(self, data: str) -> None:
        self._close_run()


def html_segments(text: str) -> tuple[str | None, list[tuple[int, int]]]:
    """The page's ``<title>`` and the trimmed spans of its visible text runs, in order."""
    parser = _Runs(text)
    parser.feed(text)
    parser.close()
    parser._close_run()
    spans: list[tuple[int, int]] = []
    for start, end in parser.runs:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and text[start:end].strip():
            spans.append((start, end))
    title = parser.title
    if title is None and spans:
        title = text[spans[0][0] : spans[0][1]]
    return title, spans
