"""OData v4 query options as the Sage 300 Web API (ASP.NET Web API 2 + OData v4) parses them.

Everything here is pure: it parses ``$filter``, ``$select``, ``$orderby``, ``$top``, ``$skip``,
``$count`` and entity keys against a typed property map and compiles ``$filter`` into a Python
predicate, so evaluating it over 100,000 records costs one function call per record.

Rules (reference §3, and where the reference is silent, the guesses listed here):

- Literals are OData v4 only: ``'text'`` with ``''`` for a quote, numbers (``12``, ``-3``,
  ``1000.00``, ``1e3``), ``true``/``false``/``null``, unquoted ISO date-times that carry a zone
  (``2026-03-01T10:00:00Z``, ``...+02:00``) and unquoted dates (``2026-03-01``). Enum values are
  quoted member names (``Status eq 'Active'``). v3 forms are rejected: typed literals
  (``datetime'...'``), type suffixes (``99.99m``, ``12L``), ``substringof``, and a date-time without
  a zone (guess: ODL requires the offset for ``Edm.DateTimeOffset``).
- Keywords and functions are lower case (``eq``, ``and``, ``startswith``); ``EQ`` is a syntax
  error (ODL is case-sensitive by default).
- ``not`` binds tighter than a comparison, as in ODL: write ``not (A eq B)``; ``not A eq B`` is a
  type error. A comparison cannot be chained (``A eq B eq C``).
- Types are checked as ODL checks them: a string property compared with a number literal, or a
  date property with a quoted string, is a 400 "incompatible types" error. Enum literals must be
  members of the property's enum (case-sensitive). Enums support ``eq``/``ne`` only (guess: Sage
  turns filters into view browse filters).
- Functions: ``startswith``, ``endswith``, ``contains`` (string, string) -> boolean; ``length``,
  ``tolower``, ``toupper``, ``trim``. Other v4 functions and arithmetic operators (``add``...)
  and ``in``/``has``/lambda operators are 400 (guess: not translatable to a view filter).
- String comparisons are case-sensitive and ordinal (guess; the Sage view may collate
  differently on SQL Server).
- **Dates.** Sage stores dates date-only (reference §7). A date property holds a calendar date;
  a date-time literal is first converted to the server's UTC offset (the simulator's ``offset``
  setting, default ``Z``) and then truncated to its date; a date literal is taken as is. The
  comparison then runs on dates. So ``DateLastMaintained gt 2026-03-01T10:00:00Z`` means "after
  1 March" (a record maintained on 1 March does not match) and ``ge 2026-03-01T10:00:00Z`` means
  "on or after 1 March" (it does). This is the "behaves like a day-granular comparison" of §7.
- Any comparison with a null value is false, except ``eq null`` / ``ne null``.
- ``$select`` and ``$orderby`` take simple property names (``$select`` also detail collections and
  ``*``); paths (``Invoices/EntryNumber``) are 400. ``$orderby`` always ends with the key as a
  tie-breaker; nulls sort first ascending (OData rule).
- ``$top``/``$skip`` must be non-negative integers; ``$count`` is ``true`` or ``false``; every
  option at most once; unknown ``$`` options (``$expand``, ``$search``, ``$inlinecount``...)
  are 400; ``$format`` accepts only JSON (guess). Options without ``$`` are custom options
  and are ignored, as ASP.NET does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

QUERY_PREFIX = "The query specified in the URI is not valid. "


class ODataError(Exception):
    """An error the service reports in the OData error body."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid_query(message: str) -> ODataError:
    return ODataError(400, "InvalidParameters", QUERY_PREFIX + message)


# --------------------------------------------------------------------------------------------
# EDM types
# --------------------------------------------------------------------------------------------

STRING, NUMBER, DATE, BOOL, ENUM, COLLECTION = "string", "number", "date", "bool", "enum", "collection"


@dataclass(frozen=True)
class EdmType:
    """The type of one property: ``kind`` drives parsing and comparison, ``name`` the messages."""

    name: str  # Edm.String, Edm.Decimal, Edm.Int32, Edm.DateTimeOffset, Edm.Boolean, enum name
    kind: str
    members: tuple[str, ...] = ()  # enum member names, in value order
    integer: bool = False  # Edm.Int32: no fractional part


EDM_STRING = EdmType("Edm.String", STRING)
EDM_DECIMAL = EdmType("Edm.Decimal", NUMBER)
EDM_INT = EdmType("Edm.Int32", NUMBER, integer=True)
EDM_DATE = EdmType("Edm.DateTimeOffset", DATE)
EDM_BOOL = EdmType("Edm.Boolean", BOOL)


def enum_type(name: str, *members: str) -> EdmType:
    return EdmType(name, ENUM, tuple(members))


def collection_type(element: str) -> EdmType:
    return EdmType(f"Collection({element})", COLLECTION)


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),])
""", re.VERBOSE)

_LITERAL_KINDS = ("string", "datetime", "date", "number")


@dataclass(frozen=True)
class Token:
    kind: str  # string, datetime, date, number, ident, punct, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            if text[pos] == "'":
                raise invalid_query(f"There is an unterminated string literal at position {pos} "
                                    f"in '{text}'.")
            raise invalid_query(f"Syntax error: character '{text[pos]}' is not valid at "
                                f"position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        end = match.end()
        if kind in _LITERAL_KINDS[1:] and end < len(text) and (text[end].isalnum()
                                                                or text[end] in ".'"):
            raise invalid_query(f"Syntax error at position {end} in '{text}': unrecognized "
                                f"literal '{text[pos:end + 1]}...' (OData v4 literals only).")
        if kind == "ident" and end < len(text) and text[end] == "'":
            raise invalid_query(f"Syntax error at position {pos} in '{text}': typed literal "
                                f"'{match.group()}'...' is OData v3 syntax; use v4 literals.")
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = end
    tokens.append(Token("end", "", len(text)))
    return tokens


def unquote_string(token_text: str) -> str:
    return token_text[1:-1].replace("''", "'")


def parse_datetime_literal(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid_query(f"The date-time literal '{text}' is not valid.") from None


def parse_date_literal(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise invalid_query(f"The date literal '{text}' is not valid.") from None


def parse_offset(offset: str) -> timezone:
    """``Z`` or ``+HH:MM``/``-HH:MM`` as a :class:`timezone`."""
    if offset == "Z":
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", offset)
    if not match or int(match.group(2)) > 14 or int(match.group(3)) > 59:
        raise ValueError(f"offset must be 'Z' or like '-04:00', not {offset!r}")
    delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    return timezone(delta if match.group(1) == "+" else -delta)


def literal_day(value: datetime, server_zone: timezone) -> str:
    """The server-local calendar date of a date-time literal, as ``YYYY-MM-DD``."""
    return value.astimezone(server_zone).date().isoformat()


# --------------------------------------------------------------------------------------------
# $filter: parse to typed nodes, then compile to closures
# --------------------------------------------------------------------------------------------

Predicate = Callable[[Mapping[str, Any]], bool]
Getter = Callable[[Mapping[str, Any]], Any]

_COMPARISONS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
                "lt": "LessThan", "le": "LessThanOrEqual"}
_UNSUPPORTED_OPERATORS = {"add", "sub", "mul", "div", "divby", "mod", "has", "in", "any", "all"}
_STRING_PREDICATES = {"startswith", "endswith", "contains"}
_STRING_FUNCTIONS = {"tolower", "toupper", "trim"}
_KNOWN_V4_FUNCTIONS = {"indexof", "substring", "concat", "year", "month", "day", "hour",
                       "minute", "second", "fractionalseconds", "date", "time", "now",
                       "totaloffsetminutes", "round", "floor", "ceiling", "cast", "isof",
                       "geo.distance", "maxdatetime", "mindatetime", "totalseconds",
                       "matchesPattern"}


@dataclass
class Node:
    """A typed expression: ``kind`` is a result kind (string, number, date, bool, enum, null)."""

    kind: str
    edm: EdmType | None = None  # property type, when the node is a property or function of one
    getter: Getter | None = None  # value of the expression for a record
    constant: Any = None  # for literals
    is_literal: bool = False
    literal_kind: str = ""  # string, number, datetime, date, bool, null
    text: str = ""


@dataclass
class FilterContext:
    properties: Mapping[str, EdmType]
    type_name: str  # full entity type name, for messages
    server_zone: timezone = UTC


class _FilterParser:
    def __init__(self, text: str, context: FilterContext) -> None:
        self.text = text
        self.ctx = context
        self.tokens = tokenize(text)
        self.index = 0

    # -- token helpers ------------------------------------------------------------------------
    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.current.kind == "ident" and self.current.text in words

    def expect_punct(self, char: str) -> None:
        if self.current.kind != "punct" or self.current.text != char:
            raise self.syntax_error(f"'{char}' expected")
        self.advance()

    def syntax_error(self, detail: str = "") -> ODataError:
        suffix = f" ({detail})" if detail else ""
        return invalid_query(f"Syntax error at position {self.current.pos} in '{self.text}'"
                             f"{suffix}.")

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> Predicate:
        if self.current.kind == "end":
            raise invalid_query("The $filter query option must not be empty.")
        node = self.parse_or()
        if self.current.kind != "end":
            if self.current.kind == "ident" and self.current.text in _COMPARISONS:
                raise invalid_query(f"Syntax error at position {self.current.pos} in "
                                    f"'{self.text}': comparisons cannot be chained.")
            raise self.syntax_error()
        if node.kind != BOOL:
            raise invalid_query("The $filter expression must evaluate to a single boolean "
                                "value.")
        getter = node.getter
        assert getter is not None
        return lambda record: getter(record) is True

    def parse_or(self) -> Node:
        left = self.parse_and()
        while self.at_keyword("or"):
            self.advance()
            right = self.parse_and()
            left = self.logical("or", left, right)
        return left

    def parse_and(self) -> Node:
        left = self.parse_comparison()
        while self.at_keyword("and"):
            self.advance()
            right = self.parse_comparison()
            left = self.logical("and", left, right)
        return left

    def parse_comparison(self) -> Node:
        left = self.parse_unary()
        if self.current.kind == "ident" and self.current.text in _COMPARISONS:
            op = self.advance().text
            right = self.parse_unary()
            return compare(op, left, right, self.ctx)
        if self.current.kind == "ident" and self.current.text in _UNSUPPORTED_OPERATORS:
            raise invalid_query(f"The operator '{self.current.text}' is not supported by this "
                                "service.")
        return left

    def parse_unary(self) -> Node:
        if self.at_keyword("not"):
            self.advance()
            operand = self.parse_unary()
            if operand.kind != BOOL:
                raise invalid_query(f"The operand for the unary not operator is of type "
                                    f"'{type_label(operand)}'; it must be Edm.Boolean.")
            inner = operand.getter
            assert inner is not None
            return Node(BOOL, getter=lambda r: None if (v := inner(r)) is None else not v)
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.current
        if token.kind == "punct" and token.text == "(":
            self.advance()
            node = self.parse_or()
            self.expect_punct(")")
            return node
        if token.kind in _LITERAL_KINDS:
            self.advance()
            return self.literal(token)
        if token.kind == "ident":
            self.advance()
            if self.current.kind == "punct" and self.current.text == "(":
                return self.function(token)
            return self.identifier(token)
        raise self.syntax_error("expression expected")

    # -- leaves -------------------------------------------------------------------------------
    def literal(self, token: Token) -> Node:
        if token.kind == "string":
            value: Any = unquote_string(token.text)
            return Node(STRING, constant=value, getter=lambda r: value, is_literal=True,
                        literal_kind="string", text=token.text)
        if token.kind == "number":
            number: float | int = float(token.text) if re.search(r"[.eE]", token.text) \
                else int(token.text)
            return Node(NUMBER, constant=number, getter=lambda r: number, is_literal=True,
                        literal_kind="number", text=token.text)
        if token.kind == "datetime":
            day = literal_day(parse_datetime_literal(token.text), self.ctx.server_zone)
            return Node(DATE, constant=day, getter=lambda r: day, is_literal=True,
                        literal_kind="datetime", text=token.text)
        day = parse_date_literal(token.text).isoformat()
        return Node(DATE, constant=day, getter=lambda r: day, is_literal=True,
                    literal_kind="date", text=token.text)

    def identifier(self, token: Token) -> Node:
        word = token.text
        if word in ("true", "false"):
            flag = word == "true"
            return Node(BOOL, constant=flag, getter=lambda r: flag, is_literal=True,
                        literal_kind="bool", text=word)
        if word == "null":
            return Node("null", constant=None, getter=lambda r: None, is_literal=True,
                        literal_kind="null", text=word)
        edm = self.ctx.properties.get(word)
        if edm is None:
            raise invalid_query(f"Could not find a property named '{word}' on type "
                                f"'{self.ctx.type_name}'.")
        if edm.kind == COLLECTION:
            raise invalid_query(f"The property '{word}' is a collection; filters on detail "
                                "collections (any/all) are not supported.")
        return Node(edm.kind, edm=edm, getter=lambda r: r.get(word), text=word)

    def function(self, token: Token) -> Node:
        name = token.text
        self.expect_punct("(")
        args: list[Node] = []
        if not (self.current.kind == "punct" and self.current.text == ")"):
            args.append(self.parse_or())
            while self.current.kind == "punct" and self.current.text == ",":
                self.advance()
                args.append(self.parse_or())
        self.expect_punct(")")
        return call_function(name, args)

    # -- combinators ----------------------------------------------------------------------------
    def logical(self, op: str, left: Node, right: Node) -> Node:
        for side in (left, right):
            if side.kind != BOOL:
                raise invalid_query(f"A binary operator with incompatible types was detected. "
                                    f"Found operand types '{type_label(left)}' and "
                                    f"'{type_label(right)}' for operator kind "
                                    f"'{op.capitalize()}'.")
        lget, rget = left.getter, right.getter
        assert lget is not None and rget is not None
        if op == "and":
            return Node(BOOL, getter=lambda r: lget(r) is True and rget(r) is True)
        return Node(BOOL, getter=lambda r: lget(r) is True or rget(r) is True)


def type_label(node: Node) -> str:
    if node.edm is not None:
        return node.edm.name
    return {STRING: "Edm.String", NUMBER: "Edm.Decimal" if node.literal_kind == "number"
            and not isinstance(node.constant, int) else "Edm.Int32",
            DATE: "Edm.DateTimeOffset" if node.literal_kind == "datetime" else "Edm.Date",
            BOOL: "Edm.Boolean", "null": "<null>"}.get(node.kind, node.kind)


def call_function(name: str, args: list[Node]) -> Node:
    if name in _STRING_PREDICATES:
        _check_string_args(name, args, 2)
        first, second = args[0].getter, args[1].getter
        assert first is not None and second is not None
        method = {"startswith": str.startswith, "endswith": str.endswith,
                  "contains": str.__contains__}[name]

        def predicate(record: Mapping[str, Any]) -> Any:
            a, b = first(record), second(record)
            if a is None or b is None:
                return None
            return method(a, b)
        return Node(BOOL, getter=predicate)
    if name == "length":
        _check_string_args(name, args, 1)
        inner = args[0].getter
        assert inner is not None
        return Node(NUMBER, getter=lambda r: None if (v := inner(r)) is None else len(v))
    if name in _STRING_FUNCTIONS:
        _check_string_args(name, args, 1)
        inner = args[0].getter
        assert inner is not None
        method = {"tolower": str.lower, "toupper": str.upper, "trim": str.strip}[name]
        return Node(STRING, getter=lambda r: None if (v := inner(r)) is None else method(v))
    if name in _KNOWN_V4_FUNCTIONS:
        raise invalid_query(f"The function '{name}' is not supported by this service.")
    raise invalid_query(f"An unknown function with name '{name}' was found. This may also be a "
                        "function import or a key lookup on a navigation property, which is "
                        "not allowed.")


def _check_string_args(name: str, args: list[Node], count: int) -> None:
    if len(args) != count:
        raise invalid_query(f"The function '{name}' takes {count} argument(s), not {len(args)}.")
    for arg in args:
        if arg.kind not in (STRING, "null"):
            raise invalid_query(f"No function signature for the function with name '{name}' "
                                f"matches the specified arguments. The function signatures "
                                f"considered are: {name}(Edm.String{', Edm.String' * (count - 1)}"
                                f"); argument type found: '{type_label(arg)}'.")


def compare(op: str, left: Node, right: Node, ctx: FilterContext) -> Node:
    """A typed comparison; raises the ODL-style 400 when the operand types cannot meet."""
    kind = _comparison_kind(op, left, right)
    lget, rget = left.getter, right.getter
    assert lget is not None and rget is not None
    if kind == "null":
        return _null_comparison(op, left, right)
    if left.is_literal and right.is_literal:
        result = _apply(op, left.constant, right.constant)
        return Node(BOOL, getter=lambda r: result)
    if right.is_literal:
        constant = right.constant
        return Node(BOOL, getter=lambda r: _apply(op, lget(r), constant))
    if left.is_literal:
        constant = left.constant
        return Node(BOOL, getter=lambda r: _apply(op, constant, rget(r)))
    return Node(BOOL, getter=lambda r: _apply(op, lget(r), rget(r)))


def _comparison_kind(op: str, left: Node, right: Node) -> str:
    if left.kind == "null" or right.kind == "null":
        return "null"  # only eq/ne can be true; other operators are simply false
    if left.kind == ENUM or right.kind == ENUM:
        _check_enum(op, left, right)
        return ENUM
    if left.kind == right.kind and left.kind in (STRING, NUMBER, DATE, BOOL):
        if left.kind == BOOL and op not in ("eq", "ne"):
            _incompatible(op, left, right)
        return left.kind
    _incompatible(op, left, right)
    return ""


def _check_enum(op: str, left: Node, right: Node) -> None:
    enum_node, other = (left, right) if left.kind == ENUM else (right, left)
    assert enum_node.edm is not None
    if other.kind == ENUM:
        if other.edm != enum_node.edm:
            _incompatible(op, left, right)
    elif other.is_literal and other.literal_kind == "string":
        if other.constant not in enum_node.edm.members:
            raise invalid_query(f"The string '{other.constant}' is not a valid enumeration type "
                                f"constant for '{enum_node.edm.name}'. Valid members: "
                                f"{', '.join(enum_node.edm.members)}.")
    else:
        _incompatible(op, left, right)
    if op not in ("eq", "ne"):
        raise invalid_query(f"The operator '{op}' is not supported on enumeration property "
                            f"'{enum_node.text}'; use eq or ne.")


def _incompatible(op: str, left: Node, right: Node) -> None:
    raise invalid_query(f"A binary operator with incompatible types was detected. Found operand "
                        f"types '{type_label(left)}' and '{type_label(right)}' for operator kind "
                        f"'{_COMPARISONS[op]}'.")


def _null_comparison(op: str, left: Node, right: Node) -> Node:
    other = right if left.kind == "null" else left
    getter = other.getter
    assert getter is not None
    if op == "eq":
        return Node(BOOL, getter=lambda r: getter(r) is None)
    if op == "ne":
        return Node(BOOL, getter=lambda r: getter(r) is not None)
    return Node(BOOL, getter=lambda r: False)


def _apply(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if a is None or b is None:
        return False
    if op == "gt":
        return a > b
    if op == "ge":
        return a >= b
    if op == "lt":
        return a < b
    return a <= b


def compile_filter(text: str, context: FilterContext) -> Predicate:
    """Parse ``$filter`` text into a predicate over internal records (dates as ``YYYY-MM-DD``)."""
    return _FilterParser(text, context).parse()


# --------------------------------------------------------------------------------------------
# $select, $orderby, $top, $skip, $count
# --------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUPPORTED_OPTIONS = {"$filter", "$select", "$orderby", "$top", "$skip", "$count", "$format"}


@dataclass
class QueryOptions:
    filter: str | None = None
    select: list[str] | None = None  # None: every property
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    top: int | None = None
    skip: int = 0
    count: bool = False

    @property
    def orderby_text(self) -> str:
        return ",".join(f"{name}{' desc' if desc else ''}" for name, desc in self.orderby)


def _unknown_property(name: str, type_name: str) -> ODataError:
    return invalid_query(f"Could not find a property named '{name}' on type '{type_name}'.")


def parse_select(text: str, properties: Mapping[str, EdmType], type_name: str) -> list[str] | None:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise invalid_query(f"Syntax error in $select '{text}': empty item.")
    if "*" in items:
        return None
    for item in items:
        if "/" in item:
            raise invalid_query(f"$select path '{item}' is not supported; select top-level "
                                "properties only.")
        if not _NAME.fullmatch(item):
            raise invalid_query(f"Syntax error in $select '{text}' at '{item}'.")
        if item not in properties:
            raise _unknown_property(item, type_name)
    return list(dict.fromkeys(items))


def parse_orderby(text: str, properties: Mapping[str, EdmType],
                  type_name: str) -> list[tuple[str, bool]]:
    result: list[tuple[str, bool]] = []
    for raw in text.split(","):
        parts = raw.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise invalid_query(f"Syntax error in $orderby '{text}' at '{raw.strip()}'.")
        name = parts[0]
        if not _NAME.fullmatch(name):
            raise invalid_query(f"$orderby '{name}' is not supported; order by simple "
                                "properties only.")
        edm = properties.get(name)
        if edm is None:
            raise _unknown_property(name, type_name)
        if edm.kind == COLLECTION:
            raise invalid_query(f"The $orderby property '{name}' is a collection.")
        result.append((name, len(parts) == 2 and parts[1] == "desc"))
    return result


def _non_negative(option: str, value: str) -> int:
    if not re.fullmatch(r"\d{1,10}", value) or int(value) > 2**31 - 1:
        raise invalid_query(f"Invalid value '{value}' for {option} query option found. The "
                            f"{option} query option requires a non-negative integer value.")
    return int(value)


def parse_query_options(query: Mapping[str, list[str]], properties: Mapping[str, EdmType],
                        type_name: str) -> QueryOptions:
    """Validate the ``$`` options of a collection GET (``query`` as parsed from the URL)."""
    options = QueryOptions()
    for name, values in query.items():
        if not name.startswith("$"):
            continue  # custom query options are ignored
        if name not in _SUPPORTED_OPTIONS:
            raise invalid_query(f"The query parameter '{name}' is not supported.")
        if len(values) > 1:
            raise invalid_query(f"Query option '{name}' was specified more than once, but it "
                                "must be specified at most once.")
    value = _single(query, "$format")
    if value is not None and value.lower() not in ("json", "application/json"):
        raise ODataError(406, "InvalidParameters", f"The $format '{value}' is not supported; "
                         "only JSON is.")
    value = _single(query, "$filter")
    if value is not None:
        if not value.strip():
            raise invalid_query("The $filter query option must not be empty.")
        options.filter = value
    value = _single(query, "$select")
    if value is not None:
        options.select = parse_select(value, properties, type_name)
    value = _single(query, "$orderby")
    if value is not None:
        options.orderby = parse_orderby(value, properties, type_name)
    value = _single(query, "$top")
    if value is not None:
        options.top = _non_negative("$top", value)
    value = _single(query, "$skip")
    if value is not None:
        options.skip = _non_negative("$skip", value)
    value = _single(query, "$count")
    if value is not None:
        if value not in ("true", "false"):
            raise invalid_query(f"'{value}' is not a valid count option.")
        options.count = value == "true"
    return options


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def apply_order(records: list[dict[str, Any]], orderby: Sequence[tuple[str, bool]],
                key_fields: Sequence[str]) -> list[dict[str, Any]]:
    """``records`` (already in key order) sorted by ``$orderby``; nulls first ascending; the key
    order stays the tie-breaker because every sort is stable."""
    result = list(records)
    for name, descending in reversed(orderby):  # stable sorts, last criterion first
        result.sort(key=lambda r, n=name: _null_first(r.get(n)), reverse=descending)
    return result


def _null_first(value: Any) -> tuple[bool, Any]:
    return (False, 0) if value is None else (True, value)


# --------------------------------------------------------------------------------------------
# Entity keys
# --------------------------------------------------------------------------------------------

SPECIAL_KEYS = ("$process", "$template")


def special_key(text: str) -> str | None:
    """``$process``/``$template`` when the key segment names one (quoted or not)."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == "'":
        stripped = stripped[1:-1]
    return stripped if stripped in SPECIAL_KEYS else None


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_key(text: str, key_props: Sequence[tuple[str, EdmType]], resource: str
              ) -> tuple[Any, ...]:
    """The key tuple named by ``Resource(text)``; 400 ``InvalidEntityKey`` if malformed.

    Accepts ``'1200'``, ``1200`` (string keys without spaces may be unquoted), ``58``,
    ``BatchNumber=58`` and, for composite keys, named segments in any order or positional
    segments in key order. A quoted value for a numeric key is rejected (reference §1.3: "do
    not rely on it").
    """
    def bad(detail: str) -> ODataError:
        return ODataError(400, "InvalidEntityKey", f"The key '({text})' is not valid for "
                          f"resource '{resource}': {detail}.")

    parts = _split_outside_quotes(text, ",")
    if len(parts) != len(key_props):
        raise bad(f"expected {len(key_props)} key value(s): "
                  f"{', '.join(name for name, _ in key_props)}")
    named: dict[str, str] = {}
    positional: list[str] = []
    for part in parts:
        pieces = _split_outside_quotes(part, "=")
        if len(pieces) == 2:
            name = pieces[0].strip()
            if name in named:
                raise bad(f"key property '{name}' given twice")
            named[name] = pieces[1].strip()
        elif len(pieces) == 1:
            positional.append(part.strip())
        else:
            raise bad("malformed segment")
    if named and positional:
        raise bad("mix of named and positional key values")
    if named:
        unknown = set(named) - {name for name, _ in key_props}
        if unknown:
            raise bad(f"unknown key property '{sorted(unknown)[0]}'")
        positional = [named[name] for name, _ in key_props]
    return tuple(_key_value(raw, edm, bad) for raw, (_, edm) in zip(positional, key_props,
                                                                    strict=True))


def _key_value(raw: str, edm: EdmType, bad: Callable[[str], ODataError]) -> Any:
    if not raw:
        raise bad("empty key value")
    if edm.kind == NUMBER:
        if not re.fullmatch(r"-?\d+(?:\.0+)?", raw):
            raise bad(f"'{raw}' is not a valid {edm.name} literal")
        return int(raw.split(".")[0])
    if raw.startswith("'"):
        if len(raw) < 2 or not raw.endswith("'") or "'" in raw[1:-1].replace("''", ""):
            raise bad(f"malformed string literal {raw}")
        return unquote_string(raw)
    if re.search(r"[\s'()]", raw):
        raise bad(f"unquoted value {raw!r}; quote string keys")
    return raw


def format_key(values: Sequence[Any], key_props: Sequence[tuple[str, EdmType]]) -> str:
    """The canonical key segment, e.g. ``('1200')``, ``(58)`` or ``(A='1',B='2')``."""
    def literal(value: Any, edm: EdmType) -> str:
        if edm.kind == NUMBER:
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"
    if len(key_props) == 1:
        return f"({literal(values[0], key_props[0][1])})"
    return "(" + ",".join(f"{name}={literal(value, edm)}"
                          for value, (name, edm) in zip(values, key_props, strict=True)) + ")"
