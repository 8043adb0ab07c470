"""Stage 1a: a .cell file as tokens, each with its line and column; ``SpecError`` for bad input."""

from __future__ import annotations

import re
from dataclasses import dataclass


class SpecError(Exception):
    """A bad specification; ``str(e)`` is the one line a user reads."""

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{col}: {message}")
        self.path, self.line, self.col, self.message = path, line, col, message


# ---- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # name, number, string, op, newline, eof
    text: str
    line: int
    col: int

    def show(self) -> str:
        return {"newline": "the end of the line", "eof": "the end of the file"}.get(self.kind, repr(self.text))


_TOKEN = re.compile(
    r"(?P<space>[ \t\r]+)|(?P<comment>#[^\n]*)|(?P<newline>\n)|(?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]{1,3})?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<string>\"[^\"\n]*\")|(?P<op>[\[\](),;:=+\-*/^])"
)


def tokenize(text: str, path: str) -> list[Token]:
    tokens: list[Token] = []
    line, start, pos, depth = 1, 0, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        col = pos - start + 1
        if m is None:
            char = text[pos]
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            if char == '"':
                raise SpecError(path, line, col, 'unterminated string: a title ends with " on the same line')
            raise SpecError(path, line, col, f"unexpected character {shown}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "newline":
            if depth == 0:
                tokens.append(Token("newline", "\n", line, col))
            line, start = line + 1, m.end()
        elif kind == "op":
            depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(m.group(), 0)
            depth = max(depth, 0)
            tokens.append(Token(kind, m.group(), line, col))
        elif kind in ("name", "number", "string"):
            if kind == "number" and m.end() < len(text) and (text[m.end()].isalpha() or text[m.end()] == "_"):
                word = re.match(r"\w+", text[pos:])
                bad = word.group() if word else text[pos]
                raise SpecError(path, line, col, f"{bad!r} is not a name: a name starts with a letter or _")
            tokens.append(Token(kind, m.group(), line, col))
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - start + 1))
    return tokens
