"""Split a migration file into statements the way the Supabase CLI does.

`supabase db push` records each migration's statements in
`supabase_migrations.schema_migrations.statements`. For our own runner to leave the same
history behind, it must cut a file at the same places, keep each piece as written (comments
included), and trim it the same way: trailing `;` off, then surrounding whitespace; empty
pieces dropped. The rules below follow the CLI's tokenizer (pkg/parser in supabase/cli):
a `;` ends a statement unless it is inside a quote, a dollar quote, a comment, a pair of
parentheses or a `begin atomic ... end` body. tests/test_migrations.py checks that both
tools record identical statements.
"""

from __future__ import annotations

import unicodedata


class _Ready:
    """Between tokens: decide which quoted or nested state the next character opens."""

    def next(self, char: str, text: str, start: int, end: int):
        if char == "$":
            return _Tag(end - 1)
        if char in "'\"":
            return _Quote(char)
        if char == "-":
            return _Dash()
        if char == "/":
            return _Block()
        if char == "\\":
            return _Escape()
        if char == ";":
            return None
        if char == "(":
            return _Nested(self, ")")
        if char in "cC" and _ends_with_atomic(text, start, end):
            return _Nested(self, "end")
        return self


def _ends_with_atomic(text: str, start: int, end: int) -> bool:
    """`begin atomic` opens a SQL-standard function body (only the ATOMIC word is checked)."""
    return end - len("atomic") >= start and text[end - len("atomic") : end].lower() == "atomic"


class _Dash:
    """One `-` seen: a second one opens a line comment."""

    def next(self, char: str, text: str, start: int, end: int):
        if char == "-":
            return _Dollar("\n")
        return _Ready().next(char, text, start, end)


class _Block:
    """After `/`: a `/* ... */` comment, nested comments counted."""

    def __init__(self):
        self.depth = 0

    def next(self, char: str, text: str, start: int, end: int):
        window = text[end - 2 : end]
        if window == "/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(char, text, start, end)
        if window == "*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self


class _Quote:
    """Inside '...' or "...": a doubled delimiter stays inside."""

    def __init__(self, delimiter: str):
        self.delimiter = delimiter
        self.closing = False

    def next(self, char: str, text: str, start: int, end: int):
        if self.closing:
            if char == self.delimiter:
                self.closing = False
                return self
            return _Ready().next(char, text, start, end)
        if char == self.delimiter:
            self.closing = True
        return self


class _Dollar:
    """Inside text that only its exact delimiter ends ($tag$ bodies, line comments)."""

    def __init__(self, delimiter: str):
        self.delimiter = delimiter

    def next(self, char: str, text: str, start: int, end: int):
        if text[end - len(self.delimiter) : end] == self.delimiter:
            return _Ready()
        return self


class _Tag:
    """After `$`: letters, digits and `_` up to a second `$` make a dollar-quote tag."""

    def __init__(self, offset: int):
        self.offset = offset

    def next(self, char: str, text: str, start: int, end: int):
        if char == "$":
            return _Dollar(text[self.offset : end])
        if char.isalpha() or unicodedata.category(char) == "Nd" or char == "_":
            return self
        return _Ready().next(char, text, start, end)


class _Escape:
    """After a backslash outside quotes: the next character is taken as is."""

    def next(self, char: str, text: str, start: int, end: int):
        return _Ready()


class _Nested:
    """Inside ( ... ) or begin atomic ... end: `;` does not end the statement."""

    def __init__(self, previous, delimiter: str):
        self.previous = previous
        self.delimiter = delimiter

    def next(self, char: str, text: str, start: int, end: int):
        current = self.previous.next(char, text, start, end)
        if current is not None:
            self.previous = current
        if isinstance(self.previous, _Ready):
            width = len(self.delimiter)
            if text[max(end - width, start) : end].lower() == self.delimiter:
                return _Ready()
        return self


def split_statements(sql: str) -> list[str]:
    """Return the statements of `sql`, cut and trimmed as `supabase db push` records them."""
    pieces: list[str] = []
    state = _Ready()
    start = 0
    for index, char in enumerate(sql):
        state = state.next(char, sql, start, index + 1)
        if state is None:
            pieces.append(sql[start : index + 1])
            start = index + 1
            state = _Ready()
    pieces.append(sql[start:])
    trimmed = (piece.rstrip(";").strip() for piece in pieces)
    return [statement for statement in trimmed if statement]
