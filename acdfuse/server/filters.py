"""The list filter language (``filters=`` and ``sort=`` of ``GET nodes``) compiled to SQL.

Grammar (keywords case-insensitive, as DUP sent lower-case ``and``)::

    expr   := and ( OR and )*
    and    := unary ( [AND] unary )*          -- juxtaposition means AND
    unary  := NOT unary | '(' expr ')' | term
    term   := field ':' ( value | range | '(' value ( (AND|OR) value )* ')' )
    range  := ('[' | '{') bound TO bound (']' | '}')     -- '*' is an open bound
    value  := '"quoted"' | bare      -- bare: '\\' escapes the next character; a trailing '*' is a prefix

At most 8 terms. Every value is a bound SQL parameter; field names map through a fixed table, so
nothing from the query string reaches the SQL text. Choices where Amazon's docs are vague:
- ``name`` matches case-insensitively (names are unique case-insensitively, and a client looking for
  a conflicting name needs exactly that); prefix ``name:abc*`` likewise.
- ``kind`` and ``status`` compare upper-cased, so ``kind:file`` works; ``kind:(FILE OR FOLDER)`` works.
- ``isRoot`` accepts only ``true``/``false`` (lower-case, as documented).
- Unless the filter mentions ``status``, lists show only AVAILABLE nodes (trash is hidden).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Union

from acdfuse.server.errors import ApiError
from acdfuse.server.util import parse_date

MAX_TERMS = 8

# field -> (SQL expression, value type)
FIELDS: dict[str, tuple[str, str]] = {
    "isroot": ("n.is_root", "bool"),
    "name": ("n.lname", "lname"),
    "kind": ("n.kind", "upper"),
    "status": ("n.status", "upper"),
    "createddate": ("n.created", "date"),
    "modifieddate": ("n.modified", "date"),
    "labels": ("n.labels", "labels"),
    "parents": ("n.id", "parents"),
    "description": ("n.description", "text"),
    "contentproperties.size": ("n.size", "int"),
    "contentproperties.contenttype": ("n.content_type", "text"),
    "contentproperties.md5": ("n.md5", "lower"),
    "contentproperties.contentdate": ("n.content_date", "date"),
    "contentproperties.extension": ("n.extension", "lower"),
    "contentproperties.version": ("n.content_version", "int"),
    "id": ("n.id", "text"),
    "version": ("n.version", "int"),
}

SORTABLE: dict[str, str] = {
    "name": "n.lname",
    "kind": "n.kind",
    "status": "n.status",
    "createddate": "n.created",
    "modifieddate": "n.modified",
    "contentproperties.size": "n.size",
    "contentproperties.contenttype": "n.content_type",
    "contentproperties.contentdate": "n.content_date",
    "contentproperties.extension": "n.extension",
}


def _err(msg: str) -> ApiError:
    return ApiError(400, f"Invalid filter: {msg}")


@dataclass
class Value:
    text: str
    prefix: bool = False
    wildcard: bool = False  # the bare '*' (open range bound)


@dataclass
class Term:
    field: str
    value: Value | None = None
    low: Value | None = None
    high: Value | None = None
    low_incl: bool = True
    high_incl: bool = True
    is_range: bool = False


@dataclass
class BoolOp:
    op: str  # AND | OR
    left: Node
    right: Node


@dataclass
class Not:
    inner: Node


Node = Union[Term, BoolOp, Not]  # noqa: UP007 - a runtime alias; py3.10 lacks X | "Y"

_SPECIAL = set('+-&|!(){}[]^"~*?:\\ ')


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.terms = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def keyword(self, kw: str) -> bool:
        self.ws()
        end = self.i + len(kw)
        if self.s[self.i : end].upper() == kw and (
            end == len(self.s) or self.s[end].isspace() or self.s[end] == "("
        ):
            self.i = end
            return True
        return False

    def parse(self) -> Node:
        node = self.expr()
        if self.peek():
            raise _err(f"unexpected {self.s[self.i : self.i + 10]!r}")
        return node

    def expr(self) -> Node:
        left = self.and_()
        while self.keyword("OR"):
            left = BoolOp("OR", left, self.and_())
        return left

    def and_(self) -> Node:
        left = self.unary()
        while True:
            c = self.peek()
            if not c or c == ")":
                return left
            save = self.i
            if self.keyword("OR"):
                self.i = save
                return left
            self.keyword("AND")
            left = BoolOp("AND", left, self.unary())

    def unary(self) -> Node:
        if self.keyword("NOT"):
            return Not(self.unary())
        c = self.peek()
        if c == "(":
            self.i += 1
            node = self.expr()
            if self.peek() != ")":
                raise _err("missing ')'")
            self.i += 1
            return node
        if not c:
            raise _err("unexpected end")
        return self.term()

    def term(self) -> Node:
        self.ws()
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] in "._"):
            self.i += 1
        field = self.s[start : self.i]
        if not field or self.i >= len(self.s) or self.s[self.i] != ":":
            raise _err(f"expected field:value at {self.s[start : start + 20]!r}")
        self.i += 1
        key = field.lower()
        if key not in FIELDS:
            raise _err(f"unknown field {field!r}")
        c = self.s[self.i] if self.i < len(self.s) else ""
        if c == "(":
            self.i += 1
            node = self.value_group(key)
            if self.peek() != ")":
                raise _err("missing ')'")
            self.i += 1
            return node
        if c and c in "[{":
            return self.range_(key)
        return self.count(Term(key, value=self.value()))

    def count(self, t: Term) -> Term:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _err(f"more than {MAX_TERMS} terms")
        return t

    def value_group(self, key: str) -> Node:
        left: Node = self.count(Term(key, value=self.value()))
        while True:
            c = self.peek()
            if c == ")" or not c:
                return left
            op = "OR" if self.keyword("OR") else "AND"
            if op == "AND":
                self.keyword("AND")  # optional: juxtaposition is AND too
            left = BoolOp(op, left, self.count(Term(key, value=self.value())))

    def range_(self, key: str) -> Node:
        low_incl = self.s[self.i] == "["
        self.i += 1
        low = self.value(in_range=True)
        if not self.keyword("TO"):
            raise _err("expected TO in range")
        high = self.value(in_range=True)
        c = self.peek()
        if c not in ("]", "}"):
            raise _err("range not closed")
        self.i += 1
        return self.count(Term(key, low=low, high=high, low_incl=low_incl, high_incl=c == "]", is_range=True))

    def value(self, in_range: bool = False) -> Value:
        self.ws()
        if self.i >= len(self.s):
            raise _err("missing value")
        if self.s[self.i] == '"':
            self.i += 1
            out = []
            while True:
                if self.i >= len(self.s):
                    raise _err("unterminated quote")
                ch = self.s[self.i]
                if ch == "\\" and self.i + 1 < len(self.s):
                    out.append(self.s[self.i + 1])
                    self.i += 2
                    continue
                self.i += 1
                if ch == '"':
                    return Value("".join(out))
                out.append(ch)
        out = []
        prefix = False
        stops = " \t\r\n()" + ("]}" if in_range else "")
        while self.i < len(self.s) and self.s[self.i] not in stops:
            ch = self.s[self.i]
            if ch == "\\":
                if self.i + 1 >= len(self.s):
                    raise _err("dangling escape")
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if ch == "*":
                nxt = self.s[self.i + 1] if self.i + 1 < len(self.s) else ""
                if nxt and nxt not in stops:
                    raise _err("'*' is only allowed at the end of a value")
                self.i += 1
                if not out:
                    return Value("*", wildcard=True)
                prefix = True
                break
            if ch in "?~^":
                raise _err(f"unsupported operator {ch!r} (escape it with '\\')")
            out.append(ch)
            self.i += 1
        if not out and not prefix:
            raise _err("empty value")
        return Value("".join(out), prefix=prefix)


def parse(text: str) -> Node:
    if len(text) > 4096:
        raise _err("too long")
    return _Parser(text).parse()


def _convert(kind: str, text: str) -> object:
    if kind == "lname":
        return text.lower()
    if kind == "upper":
        return text.upper()
    if kind == "lower":
        return text.lower()
    if kind == "int":
        try:
            n = int(text)
        except ValueError:
            raise _err(f"not a number: {text!r}") from None
        # SQLite integers are 64-bit; a bound beyond them compares like the largest one
        return max(-(2**63), min(n, 2**63 - 1))
    if kind == "date":
        try:
            return parse_date(text)
        except ValueError:
            raise _err(f"not a date: {text!r}") from None
    return text


def _term_sql(t: Term, params: list[object]) -> str:
    col, kind = FIELDS[t.field]
    if t.is_range:
        if kind in ("labels", "parents", "bool"):
            raise _err(f"{t.field} does not support ranges")
        parts = []
        assert t.low is not None and t.high is not None
        if not t.low.wildcard:
            params.append(_convert(kind, t.low.text))
            parts.append(f"{col} {'>=' if t.low_incl else '>'} ?")
        if not t.high.wildcard:
            params.append(_convert(kind, t.high.text))
            parts.append(f"{col} {'<=' if t.high_incl else '<'} ?")
        return "(" + " AND ".join(parts) + ")" if parts else "1"
    v = t.value
    assert v is not None
    if v.wildcard:
        return f"{col} IS NOT NULL"
    if kind == "bool":
        if v.text not in ("true", "false") or v.prefix:
            raise _err(f"{t.field} takes true or false")
        return f"{col} = {1 if v.text == 'true' else 0}"
    if kind == "parents":
        if v.prefix:
            raise _err("parents does not support prefixes")
        params.append(v.text)
        return "n.id IN (SELECT child FROM parents WHERE parent = ?)"
    if kind == "labels":
        if v.prefix:
            # GLOB has no escape character; bracketing makes its metacharacters literal
            literal = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in v.text)
            params.append(literal + "*")
            return "EXISTS (SELECT 1 FROM json_each(n.labels) WHERE json_each.value GLOB ?)"
        params.append(v.text)
        return "EXISTS (SELECT 1 FROM json_each(n.labels) WHERE json_each.value = ?)"
    if v.prefix:
        if kind in ("int", "date"):
            raise _err(f"{t.field} does not support prefixes")
        p = str(_convert(kind, v.text))
        # an index-friendly prefix test: p <= col < p + U+10FFFF
        params.extend([p, p + "\U0010ffff"])
        return f"({col} >= ? AND {col} < ?)"
    params.append(_convert(kind, v.text))
    return f"{col} = ?"


def compile_filter(node: Node, params: list[object]) -> tuple[str, bool]:
    """SQL for the tree; the bool says whether ``status`` was mentioned."""
    if isinstance(node, Term):
        return _term_sql(node, params), node.field == "status"
    if isinstance(node, Not):
        sql, st = compile_filter(node.inner, params)
        return f"NOT ({sql})", st
    lsql, lst = compile_filter(node.left, params)
    rsql, rst = compile_filter(node.right, params)
    return f"({lsql} {node.op} {rsql})", lst or rst


def compile_sort(text: str | None) -> list[str]:
    """``sort`` as JSON list (``["name ASC"]``), Python-ish list or comma-separated text -> SQL terms."""
    if not text:
        return []
    raw = text.strip()
    items: list[str]
    if raw.startswith("["):
        try:
            loaded = json.loads(raw.replace("'", '"'))
        except ValueError:
            raise ApiError(400, "Invalid sort: not a list") from None
        if not isinstance(loaded, list) or not all(isinstance(x, str) for x in loaded):
            raise ApiError(400, "Invalid sort: not a list of strings")
        items = loaded
    else:
        items = [x for x in raw.split(",") if x.strip()]
    out = []
    for item in items:
        words = item.split()
        if not words or len(words) > 2:
            raise ApiError(400, f"Invalid sort term {item!r}")
        col = SORTABLE.get(words[0].lower())
        if col is None:
            raise ApiError(400, f"Invalid sort: field {words[0]!r} is not sortable")
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise ApiError(400, f"Invalid sort direction {words[1]!r}")
        out.append(f"{col} {direction}")
    return out
