"""YAML syntax errors in plain words, located at the mistake.

PyYAML and libyaml (the C parser, used when installed) describe a syntax error by the
parser state they were in ("while parsing a block mapping ... did not find expected
key"), which says nothing to someone who hand-edits a spec. Their messages differ
(libyaml: "did not find expected ',' or ']'"; PyYAML: "expected ',' or ']', but got
':'"), so each rule below matches a fragment both share. A rule reads the text around
the marks and says what is wrong in the file's terms, where the mistake is: the
opening quote or bracket of one never closed, the line whose indentation breaks its
block (the parser notices some lines later), the line above with no ':'.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import ErrorItem

__all__ = ["PARSER", "reader_error", "syntax_error"]

PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""The loader whose parser reads specs: libyaml's when installed (source reads with it too)."""


@dataclass(frozen=True)
class _Failure:
    """A parser's syntax error, as the rules read it."""

    text: str
    context: str
    """PyYAML's ``context``: ``while parsing a flow mapping`` ("" if none)."""
    problem: str
    at: int
    """Index in ``text`` of the problem mark: where the parser gave up."""
    opened: int | None
    """Index of the context mark: where what it was reading began (a quote, a bracket)."""

    @classmethod
    def of(cls, text: str, exc: yaml.MarkedYAMLError) -> _Failure:
        def index(mark: Any) -> int | None:
            return None if mark is None else min(max(int(mark.index), 0), len(text))

        at = index(exc.problem_mark)
        opened = index(exc.context_mark)
        where = at if at is not None else (opened if opened is not None else 0)
        return cls(text, exc.context or "", exc.problem or "", where, opened)

    def char(self, index: int) -> str:
        """The character at ``index`` ("" past the end)."""
        return self.text[index] if 0 <= index < len(self.text) else ""


_Said = tuple[int, str]
"""Where (an index in the text) and what to report."""

_CLOSERS = {"[": "]", "{": "}"}
_BLOCK_TROUBLE = (
    "did not find expected key",
    "expected <block end>",
    "did not find expected '-' indicator",
    "mapping values are not allowed",
    "document start",
)
"""Problems a line indented wrongly causes in block style (keys and '- ' items by
indentation): libyaml's wording, then PyYAML's."""
_FIX_LINES = 30
"""Lines, up from where the parser gave up, whose indentation may be the mistake."""
_FIX_INDENTS = 5
"""Indentations tried for each of those lines."""
_FIX_TRIALS = 160
"""Trials at most (re-indented copies of the text parsed), however small the spec."""
_FIX_CHARS = 4_000_000
"""Characters reparsed at most in search of the line to re-indent: about 0.3 s with
libyaml, whatever the spec's size (a large one gets fewer trials)."""
_KEY_LINE = re.compile(r"""^(?:-\s+)?(?:"[^"]*"|'[^']*'|[^\s#"'\[\]{},][^#]*?)\s*:(?:\s|$)""")
"""A line that starts with a key (``name:``, ``- name:``, ``"name":``)."""
_NO_SPACE_KEY = re.compile(r"^(\s*(?:-\s+)?)([A-Za-z0-9_$.-]+):(\S.*)$")
"""``type:ReLU``: a key whose ':' has no space after it, which YAML reads as text."""


def syntax_error(text: str, exc: yaml.MarkedYAMLError, file: str | None) -> ErrorItem:
    """The located, plain-words error for a parser's syntax error."""
    failure = _Failure.of(text, exc)
    for rule in _RULES:
        said = rule(failure)
        if said is not None:
            break
    else:
        said = (failure.at, f"not valid YAML: {failure.problem or 'unreadable text'}")
    at, msg = said
    line, col = _line_col(text, at)
    return ErrorItem((), msg, "syntax", file, line, col)


def reader_error(text: str, exc: yaml.YAMLError, file: str | None) -> ErrorItem:
    """A character YAML does not allow (control characters), where it is.

    libyaml counts the position in UTF-8 bytes, PyYAML in characters: the first
    occurrence of the character is the one refused either way.
    """
    code = getattr(exc, "character", None)
    if isinstance(code, int):
        found = text.find(chr(code))
        line, col = _line_col(text, found) if found >= 0 else (1, 1)
        msg = f"the control character U+{code:04X} is not allowed in a spec"
        return ErrorItem((), msg, "syntax", file, line, col)
    return ErrorItem((), f"unreadable spec: {exc}", "syntax", file, 1, 1)


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``index``, as PyYAML's marks count them."""
    start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - start + 1


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    """Whether a line holds YAML (not blank, not only a comment)."""
    body = line.strip()
    return bool(body) and not body.startswith("#")


def _without_comment(line: str) -> str:
    """The line up to a ``#`` comment (``#`` after a space starts one), stripped."""
    m = re.search(r"(?:^|\s)#", line)
    return (line[: m.start()] if m else line).strip()


# -- rules, in the order they are tried; each says something or returns None ---------


def _tab(f: _Failure) -> _Said | None:
    """A tab where YAML needs spaces (both parsers say so only as "cannot start any token")."""
    if f.char(f.at) != "\t" and "tab" not in f.problem and "'\\t'" not in f.problem:
        return None
    start = _line_start(f.text, f.at)
    lead = f.text[start : f.at + 1]
    tab = lead.find("\t")
    at = start + tab if tab >= 0 and not lead[:tab].strip() else f.at
    return at, "a tab character: YAML indents with spaces (replace the tab with spaces)"


def _misindented(f: _Failure) -> _Said | None:
    """The one line whose indentation, changed, lets the text parse.

    The parser stops where the block structure stops making sense, which is often lines
    after the mistake: a key indented less than its siblings may still fit as a key of
    the block above, and only the next line (at the right indentation) fails. Trying
    the indentations of the blocks open above each earlier line finds the line to fix.
    """
    if "flow" in f.context or not any(p in f.problem for p in _BLOCK_TROUBLE):
        return None
    lines = f.text.split("\n")
    found = _line_to_reindent(lines, f.text.count("\n", 0, f.at))
    if found is None:
        return None
    line, right = found
    start = sum(len(s) + 1 for s in lines[:line])
    return start + _indent(lines[line]), _indent_message(lines, line, right)


def _line_to_reindent(lines: list[str], failed: int) -> tuple[int, int] | None:
    """(line, indentation) of the likeliest fix that lets the whole text parse, or
    failing that of the one that parses the furthest, nearest to where the parser gave up.

    Each trial reparses the text, so their number shrinks as the spec grows (PyYAML's
    pure-Python parser, fifty times slower than libyaml, gets fewer still).
    """
    size = sum(len(s) + 1 for s in lines)
    fast = PARSER is getattr(yaml, "CSafeLoader", None)
    trials = min(_FIX_TRIALS, (_FIX_CHARS if fast else _FIX_CHARS // 50) // max(size, 1))
    last = min(failed, len(lines) - 1)
    candidates = [i for i in range(last, -1, -1) if _is_content(lines[i])][:_FIX_LINES]
    starts, _ = _parse_lines(lines)
    unit = _indent_unit(lines)
    whole: list[tuple[tuple[int, int, int, int, bool, int], int, int]] = []
    best: tuple[float, int, int] | None = None
    for line in candidates:
        if "\t" in lines[line][: _indent(lines[line]) + 1]:
            continue
        # Lines that start a value (and the failed one) must still: a fix that turns them
        # into more text of the value above hides the mistake instead of finding it.
        keep = {i for i in range(line, last + 1) if i in starts or i in (line, last)}
        for right in _indents_to_try(lines, line, unit)[: max(trials, 0)]:
            trials -= 1
            trial = [*lines[:line], " " * right + lines[line].lstrip(" "), *lines[line + 1 :]]
            started, reach = _parse_lines(trial)
            if not keep <= started:
                continue
            if reach == math.inf:
                whole.append((_unlikeliness(lines, trial, line, right, unit, last), line, right))
            elif reach > (best[0] if best else failed):
                best = (reach, line, right)
    if whole:
        _, line, right = min(whole)
        return line, right
    return best[1:] if best else None


def _unlikeliness(
    lines: list[str], trial: list[str], line: int, right: int, unit: int, last: int
) -> tuple[int, int, int, int, bool, int]:
    """How unlikely a fix that parses is, lowest first. Several single fixes may parse
    (the first key of a block is the odd one out, or the second is): the likeliest
    leaves no key without a value, moves the line least, indents every line as the rest
    of the file does, lines it up with its neighbours (the line above first), and is
    nearest to where the parser gave up."""
    return (
        _empty_keys(trial),
        abs(right - _indent(lines[line])),
        _odd_lines(trial, unit),
        _indent_changes(trial),
        right != _indent_above(lines, line),
        last - line,
    )


def _indent_unit(lines: list[str]) -> int:
    """The file's indentation step: 4 or 3 when nearly every line's indentation (all
    but one in ten) is a multiple of it, else the usual 2."""
    indents = [_indent(s) for s in lines if _is_content(s)]
    for unit in (4, 3):
        if sum(n % unit != 0 for n in indents) <= len(indents) // 10:
            return unit
    return 2


def _nesting(lines: list[str]) -> list[tuple[tuple[int, int] | None, int, str]]:
    """Each content line with the line it belongs under (the nearest less indented one
    above, as (indentation, where the content of its ``- `` item starts, else -1))."""
    out: list[tuple[tuple[int, int] | None, int, str]] = []
    open_: list[tuple[int, int]] = []
    for line in filter(_is_content, lines):
        n = _indent(line)
        while open_ and open_[-1][0] >= n:
            open_.pop()
        out.append((open_[-1] if open_ else None, n, line))
        body = line[n:]
        open_.append((n, n + 1 + _indent(body[1:]) if body.startswith("- ") else -1))
    return out


def _odd_lines(lines: list[str], unit: int) -> int:
    """Lines not one ``unit`` deeper than the line they belong under (nor aligned with
    the content of the ``- `` item they belong to)."""
    odd = 0
    for parent, n, _ in _nesting(lines):
        if parent is None:
            odd += n != 0
        else:
            odd += n != parent[0] + unit and n != parent[1]
    return odd


def _indent_above(lines: list[str], line: int) -> int:
    above = next((s for s in reversed(lines[:line]) if _is_content(s)), "")
    return _indent(above)


def _indent_changes(lines: list[str]) -> int:
    """How often the indentation changes from one line to the next: a line that sits
    out of its block changes it twice."""
    indents = [_indent(s) for s in lines if _is_content(s)]
    return sum(a != b for a, b in itertools.pairwise(indents))


def _empty_keys(lines: list[str]) -> int:
    """Keys with neither a value on their line nor lines indented under them (``model:``
    followed by a sibling): legal, but in a spec nearly always an indentation slip."""
    body = [s for s in lines if _is_content(s)]
    empty = 0
    for here, below in zip(body, [*body[1:], ""], strict=True):
        if _without_comment(here).endswith(":") and _KEY_LINE.match(here.strip()):
            n = _indent(here)
            deeper = _is_content(below) and (
                _indent(below) > n or (_indent(below) == n and below.strip().startswith("-"))
            )
            empty += not deeper
    return empty


def _indents_to_try(lines: list[str], line: int, unit: int) -> list[int]:
    """The indentations a line might have meant: those of the blocks open above it (each
    less indented line going up, and where a ``- `` item's content starts), one step
    deeper than the nearest of them, and the next line's."""
    own = _indent(lines[line])
    found: list[int] = []
    limit = math.inf
    for i in range(line - 1, -1, -1):
        if not _is_content(lines[i]):
            continue
        n = _indent(lines[i])
        body = lines[i][n:]
        if body.startswith("- ") and n < limit:
            found.append(n + 1 + _indent(body[1:]))
        if n < limit:
            found.append(n)
            if limit == math.inf:
                found.append(n + unit)
            limit = n
        if n == 0 or len(found) >= 2 * _FIX_INDENTS:
            break
    below = next((s for s in lines[line + 1 :] if _is_content(s)), None)
    if below is not None:
        found.insert(1, _indent(below))
    unique = [n for i, n in enumerate(found) if n != own and n not in found[:i]]
    return unique[:_FIX_INDENTS]


def _parse_lines(lines: list[str]) -> tuple[set[int], float]:
    """The lines on which a value (or key) starts, up to the first syntax error, and the
    line of that error (``inf`` if there is none)."""
    starts: set[int] = set()
    try:
        for event in yaml.parse("\n".join(lines), Loader=PARSER):
            if isinstance(event, yaml.NodeEvent) and event.start_mark is not None:
                starts.add(event.start_mark.line)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        return starts, float(mark.line) if mark is not None else -1.0
    except yaml.YAMLError:
        return starts, -1.0
    return starts, math.inf


def _indent_message(lines: list[str], line: int, right: int) -> str:
    own = _indent(lines[line])
    body = lines[line].strip()
    what, them = (
        ("list item (- ...)", "items")
        if body == "-" or body.startswith("- ")
        else (("key", "keys") if _KEY_LINE.match(body) else ("line", "lines"))
    )
    more = "more" if own > right else "less"
    return (
        f"this {what} is indented {more} than the {them} {_side(lines, line, right)} it "
        f"({_spaces(own)} instead of {right})"
    )


def _spaces(n: int) -> str:
    return "1 space" if n == 1 else f"{n} spaces"


def _side(lines: list[str], line: int, indent: int) -> str:
    """Whether the nearest line at ``indent`` is above ``line`` or below it."""
    for distance in range(1, len(lines)):
        for i, side in ((line - distance, "above"), (line + distance, "below")):
            if 0 <= i < len(lines) and _is_content(lines[i]) and _indent(lines[i]) == indent:
                return side
    return "above"


def _unclosed_quote(f: _Failure) -> _Said | None:
    """A quoted value never closed: the parser reads to the end of the file."""
    if "quoted scalar" not in f.context or f.opened is None:
        return None
    if "escape" in f.problem or "hex" in f.problem:
        slash = f.text.rfind("\\", f.opened, f.at + 1)
        at = slash if slash >= 0 else f.at
        seq = f.text[at : at + 2]
        return at, (
            f"'{seq}' is not a valid escape in a double-quoted value: use single quotes "
            "for text with backslashes, or write '\\\\' for one"
        )
    quote = f.char(f.opened)
    return f.opened, f"this {quote} is never closed: a quoted value ends with the same {quote}"


def _flow(f: _Failure) -> _Said | None:
    """Inside ``[...]`` or ``{...}``: a bracket never closed, a ',' or ':' missing."""
    if "expected ','" not in f.problem or f.opened is None:
        return None
    opener = f.char(f.opened)
    if opener in _CLOSERS and _closing(f.text, f.opened) is None:
        return f.opened, f"this {opener} is never closed (no {_CLOSERS[opener]} for it)"
    if f.char(f.at) == ":":
        start = _token_start(f.text, f.at)
        before = _char_before(f.text, start)
        if before == ":":
            return f.at, _second_colon(f.text, f.at)
        if "\n" in f.text[start : f.at]:
            return f.at, "a ':' on the line after its key: a key and its ':' go on one line"
        if before and before not in ",[{":
            return start, "a ',' is missing before this key"
        return f.at, "a ':' that belongs to a value: put the value in quotes"
    start = _token_start(f.text, f.at)
    if opener == "{" and start < f.at and _char_before(f.text, start) in ",{":
        return start, "this key has no ':' after it"
    if opener == "{" and _key_at(f.text, f.at):
        return f.at, "a ',' is missing before this key"
    return f.at, "a ',' is missing before this value"


def _text_above(f: _Failure) -> _Said | None:
    """A key at the start of a line that YAML reads as more text of the line above:
    that line's own ':' is missing, or has no space after it (``type:ReLU``).

    Tried before the indentation: re-indenting the key would parse, and hide this.
    """
    if "mapping values are not allowed" not in f.problem:
        return None
    start = _line_start(f.text, f.at)
    before = f.text[start : f.at].strip()
    if not before or re.search(r"[:\s]", before) or before.startswith("-"):
        return None
    lines = f.text[:start].split("\n")[:-1]
    above = next((i for i in range(len(lines) - 1, -1, -1) if _is_content(lines[i])), None)
    if above is None:
        return None
    begin = sum(len(s) + 1 for s in lines[:above])
    m = _NO_SPACE_KEY.match(lines[above])
    if m is not None:
        fixed = f"{m.group(2)}: {_without_comment(m.group(3))}"
        return begin + len(m.group(1)) + len(m.group(2)), (
            f"a ':' needs a space after it: write '{fixed}'"
        )
    line = _without_comment(lines[above])
    if ":" in line or line.startswith(("-", "[", "{", '"', "'", "|", ">")):
        return None
    return begin + _indent(lines[above]), (
        "this line has no ':' after its key (write 'name: value'), so the key on the "
        "next line reads as more of its text"
    )


def _stray_colon(f: _Failure) -> _Said | None:
    """``mapping values are not allowed``: a second ``: `` on a line, which belongs in a
    quoted value."""
    if "mapping values are not allowed" not in f.problem:
        return None
    start = _line_start(f.text, f.at)
    if re.search(r":\s", f.text[start : f.at]):
        return f.at, _second_colon(f.text, f.at)
    return f.at, "a ':' that belongs to a value: put the value in quotes"


def _second_colon(text: str, at: int) -> str:
    """The message for a second ``: `` in a value, with the line's value quoted."""
    start = _line_start(text, at)
    line = text[start : text.find("\n", at) if "\n" in text[at:] else len(text)]
    m = re.match(r"^\s*(?:-\s+)?([^:]+):\s+(.*)$", _without_comment(line))
    if m is None or "{" in line or "[" in line:
        return "a second ':' in one value: put the value in quotes"
    return (
        "a second ':' on this line: if it belongs to the value, put the value in quotes: "
        f'{m.group(1).strip()}: "{m.group(2).strip()}"'
    )


def _block_key(f: _Failure) -> _Said | None:
    """Block style, where a key (or a ``- `` item) was expected and something else came."""
    in_list = "expected '-' indicator" in f.problem or (
        "expected <block end>" in f.problem and "block collection" in f.context
    )
    if not in_list and not any(
        p in f.problem for p in ("did not find expected key", "expected <block end>")
    ):
        return None
    c = f.char(f.at)
    before = _char_before(f.text, f.at)
    same_line = bool(f.text[_line_start(f.text, f.at) : f.at].strip())
    if c in ("]", "}"):
        return f.at, f"this {c} closes nothing: is it one too many?"
    if c == ":":
        return f.at, "a ':' with no key before it"
    if same_line and before in ('"', "'"):
        return f.at, "text after the closing quote: put all of the value inside the quotes"
    if same_line and before in ("]", "}"):
        return f.at, f"text after the closing {before} of the value"
    if in_list:
        return f.at, "a key where a list item (- ...) was expected: the items above start with '- '"
    if c == "-" and f.char(f.at + 1) in ("", " ", "\n", "\r"):
        return f.at, (
            "a list item (- ...) where a key was expected: a list is the value of a key "
            "('layers:'), its items indented under it"
        )
    return f.at, "this does not fit the lines above it: check its indentation"


def _after_end(f: _Failure) -> _Said | None:
    if "document start" not in f.problem:
        return None
    c = f.char(f.at)
    if c in ("]", "}"):
        return f.at, f"this {c} closes nothing: is it one too many?"
    return f.at, "text after the end of the document: the spec above it is complete"


def _simple_key(f: _Failure) -> _Said | None:
    """A key whose ':' is missing: the parser reads on to the next line for it."""
    if "could not find expected ':'" not in f.problem or f.opened is None:
        return None
    end = f.text.find("\n", f.opened)
    word = _without_comment(f.text[f.opened : end if end >= 0 else len(f.text)])
    return f.opened, f"':' is missing after '{word}' (a key is written '{word}: ...')"


def _lone_value(f: _Failure) -> _Said | None:
    """A value missing: two ',' in a row, or a bracket that closes nothing."""
    if "node content" not in f.problem:
        return None
    c = f.char(f.at)
    if c == ",":
        return f.at, "a value is missing before this ','"
    if c in ("]", "}"):
        return f.at, f"this {c} closes nothing: is it one too many?"
    return f.at, "a value is missing here"


def _reserved(f: _Failure) -> _Said | None:
    """A value starting with a character YAML reserves: it needs quotes."""
    opened = f.opened if f.opened is not None else f.at
    if "cannot start any token" in f.problem:
        c = f.char(f.at)
        return f.at, f"a key or value cannot start with '{c}': put it in quotes"
    if "an alias" in f.context or "an anchor" in f.context:
        what = "alias (*name)" if "alias" in f.context else "anchor (&name)"
        return opened, f"'{f.char(opened)}' starts an {what}: put the value in quotes if it is text"
    if "a tag" in f.context:
        return opened, "'!' starts a YAML tag: put the value in quotes if it is text"
    if "a directive" in f.context:
        return opened, "a line starting with '%' is a YAML directive: put the value in quotes"
    if "a block scalar" in f.context:
        return opened, (
            "after '|' or '>' only a comment may follow on the line: the text goes on the "
            "lines below, indented"
        )
    if "sequence entries are not allowed" in f.problem:
        return f.at, (
            "a list item (- ...) cannot follow a key on its line: put the items on the lines "
            "below, indented, or write [a, b]"
        )
    if "found unexpected ':'" in f.problem:  # PyYAML: ``{kernel_size:]``
        return f.at, "a ':' needs a space after it (or the value quotes around it)"
    if "mapping keys are not allowed" in f.problem:
        return f.at, "a key or value cannot start with '?': put it in quotes"
    return None


_RULES = (
    _tab,
    _unclosed_quote,
    _text_above,
    _misindented,
    _flow,
    _stray_colon,
    _block_key,
    _after_end,
    _simple_key,
    _lone_value,
    _reserved,
)


# -- reading the text around a mark ---------------------------------------------------


def _char_before(text: str, index: int) -> str:
    """The last character before ``index`` that is not white space ("" if none)."""
    i = index - 1
    while i >= 0 and text[i] in " \t\r\n":
        i -= 1
    return text[i] if i >= 0 else ""


def _token_start(text: str, index: int) -> int:
    """Where the value or key that ends before ``index`` starts: a quoted string, or
    the last word of plain text."""
    i = index
    while i > 0 and text[i - 1] in " \t\r\n":
        i -= 1
    if i > 0 and text[i - 1] in "\"'":
        opening = text.rfind(text[i - 1], 0, i - 1)
        return opening if opening >= 0 else i - 1
    while i > 0 and text[i - 1] not in " \t\r\n,[]{}:":
        i -= 1
    return i


def _key_at(text: str, index: int) -> bool:
    """Whether a key (a quoted string or a word, then ':') starts at ``index``."""
    if text[index : index + 1] in ('"', "'"):
        end = _quote_end(text, index) + 1
    else:
        end = index
        while end < len(text) and text[end] not in " \t\r\n,[]{}:":
            end += 1
    rest = text[end:].lstrip(" \t")
    return end > index and rest.startswith(":")


def _closing(text: str, opened: int) -> int | None:
    """Where the bracket at ``opened`` is closed, or None if it never is (or a bracket of
    the other kind closes first). Quoted strings and comments are skipped."""
    stack: list[str] = []
    i = opened
    while i < len(text):
        c = text[i]
        starts_token = i == 0 or text[i - 1] in " \t\r\n[{,:"
        if c in "\"'" and starts_token:
            i = _quote_end(text, i)
        elif c == "#" and (i == 0 or text[i - 1] in " \t\r\n"):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c in _CLOSERS:
            stack.append(_CLOSERS[c])
        elif c in ("]", "}"):
            if not stack or stack.pop() != c:
                return None
            if not stack:
                return i
        i += 1
    return None


def _quote_end(text: str, start: int) -> int:
    """The index of the quote that closes the string opening at ``start`` (or the end)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i
        i += 1
    return len(text)
