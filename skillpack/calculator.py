"""Safe arithmetic: a tokenizer and a Pratt parser over a strict whitelist — never ``eval``.

``solve(text)`` finds the arithmetic in free English or Chinese text ("15% of 240",
"240的15%", "average of 3, 5 and 10", "三加五乘二", "what is 2 to the power of 10") and evaluates
it; ``evaluate(expression)`` evaluates a bare expression and rejects anything that is not a
number, an operator, a parenthesis or a whitelisted function (``sqrt avg sum min max abs``).
Both return :class:`CalcResult` or raise a :class:`skillpack.errors.SkillError` subclass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from skillpack.errors import CalculationError, NoExpressionFound, UnsafeExpression
from skillpack.text import normalize_numbers

MAX_INPUT_CHARS = 2000
MAX_TOKENS = 256
MAX_DEPTH = 40
MAX_ABS_VALUE = 1e100
MAX_EXPONENT = 1000.0


def _avg(*xs: float) -> float:
    return sum(xs) / len(xs)


def _cbrt(x: float) -> float:
    return math.copysign(abs(x) ** (1.0 / 3.0), x)


def _sqrt(x: float) -> float:
    if x < 0:
        raise CalculationError(f"square root of a negative number ({_fmt(x)})")
    return math.sqrt(x)


FUNCTIONS: dict[str, tuple[Callable[..., float], int, int]] = {
    # name: (function, min args, max args)
    "sqrt": (_sqrt, 1, 1),
    "cbrt": (_cbrt, 1, 1),
    "abs": (abs, 1, 1),
    "avg": (_avg, 1, 64),
    "sum": (lambda *xs: math.fsum(xs), 1, 64),
    "product": (lambda *xs: math.prod(xs), 1, 64),
    "min": (min, 1, 64),
    "max": (max, 1, 64),
}
CONSTANTS: dict[str, float] = {"pi": math.pi}


@dataclass(frozen=True)
class CalcResult:
    value: float
    expression: str

    @property
    def text(self) -> str:
        return f"{self.expression} = {_fmt(self.value)}"

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "expression": self.expression, "text": self.text}


def _fmt(value: float) -> str:
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


# ----------------------------------------------------------------------------- tokenizer
@dataclass(frozen=True)
class Token:
    kind: str  # num, op, lp, rp, comma, name, end
    text: str
    value: float = 0.0


_TOKEN_RE = re.compile(
    r"\s*(?:(\d+\.\d*|\.\d+|\d+)(?:[eE]([-+]?\d+))?|(\*\*|[-+*/^%(),])|([A-Za-z_][A-Za-z_0-9]*)|(\S))"
)


def tokenize(expression: str) -> list[Token]:
    """Strict: any character outside numbers, ``+ - * / ^ % ( ) ,`` and whitelisted names is an
    :class:`UnsafeExpression`."""
    if len(expression) > MAX_INPUT_CHARS:
        raise UnsafeExpression(f"expression longer than {MAX_INPUT_CHARS} characters")
    tokens: list[Token] = []
    pos = 0
    while pos < len(expression):
        m = _TOKEN_RE.match(expression, pos)
        if m is None:  # only trailing whitespace is left
            break
        pos = m.end()
        num, exp, op, name, other = m.groups()
        if num is not None:
            text = num + (f"e{exp}" if exp else "")
            value = float(text)
            if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
                raise CalculationError(f"number {text[:20]} is too large")
            tokens.append(Token("num", text, value))
        elif op is not None:
            op = "^" if op == "**" else op
            kind = {"(": "lp", ")": "rp", ",": "comma"}.get(op, "op")
            tokens.append(Token(kind, op))
        elif name is not None:
            low = name.lower()
            if low not in FUNCTIONS and low not in CONSTANTS:
                raise UnsafeExpression(f"'{name[:30]}' is not a number, operator or allowed function")
            tokens.append(Token("name", low))
        else:
            raise UnsafeExpression(f"character {other!r} is not allowed in an expression")
        if len(tokens) > MAX_TOKENS:
            raise UnsafeExpression(f"expression has more than {MAX_TOKENS} tokens")
    tokens.append(Token("end", ""))
    return tokens


# ----------------------------------------------------------------------------- Pratt parser
# AST: ("num", value) | ("neg", node) | ("pct", node) | ("bin", op, left, right) | ("call", name, [args])
Node = tuple


_INFIX_BP: dict[str, tuple[int, int]] = {
    "+": (10, 11),
    "-": (10, 11),
    "*": (20, 21),
    "/": (20, 21),
    "^": (41, 40),
}
_PREFIX_BP = 30
_POSTFIX_BP = 50  # %


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            raise UnsafeExpression(f"expected {what}, found {tok.text or 'end of expression'!r}")
        return tok

    def parse(self) -> Node:
        node = self.expr(0, 0)
        if self.peek().kind != "end":
            raise UnsafeExpression(f"unexpected {self.peek().text!r}")
        return node

    def expr(self, min_bp: int, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise UnsafeExpression(f"expression nested deeper than {MAX_DEPTH}")
        tok = self.take()
        left: Node
        if tok.kind == "num":
            left = ("num", tok.value)
        elif tok.kind == "op" and tok.text in "+-":
            operand = self.expr(_PREFIX_BP, depth + 1)
            left = ("neg", operand) if tok.text == "-" else operand
        elif tok.kind == "lp":
            left = self.expr(0, depth + 1)
            self.expect("rp", "')'")
        elif tok.kind == "name" and tok.text in CONSTANTS:
            left = ("num", CONSTANTS[tok.text])
        elif tok.kind == "name":
            self.expect("lp", f"'(' after {tok.text}")
            args = [self.expr(0, depth + 1)]
            while self.peek().kind == "comma":
                self.take()
                args.append(self.expr(0, depth + 1))
            self.expect("rp", "')'")
            left = ("call", tok.text, args)
        else:
            raise UnsafeExpression(f"unexpected {tok.text or 'end of expression'!r}")
        while True:
            op = self.peek()
            if op.kind == "op" and op.text == "%":
                if min_bp > _POSTFIX_BP:
                    break
                self.take()
                left = ("pct", left)
                continue
            if op.kind != "op" or op.text not in _INFIX_BP:
                break
            lbp, rbp = _INFIX_BP[op.text]
            if lbp < min_bp:
                break
            self.take()
            right = self.expr(rbp, depth + 1)
            left = ("bin", op.text, left, right)
        return left


def parse(expression: str) -> Node:
    return _Parser(tokenize(expression)).parse()


def _check(value: float) -> float:
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise CalculationError("result is too large")
    return value


def eval_node(node: Node) -> float:
    kind = node[0]
    if kind == "num":
        return float(node[1])
    if kind == "neg":
        return -eval_node(node[1])
    if kind == "pct":
        return eval_node(node[1]) / 100.0
    if kind == "call":
        fn, lo, hi = FUNCTIONS[node[1]]
        args = [eval_node(a) for a in node[2]]
        if not lo <= len(args) <= hi:
            raise UnsafeExpression(f"{node[1]} takes {lo}..{hi} arguments, got {len(args)}")
        return _check(float(fn(*args)))
    op, a, b = node[1], eval_node(node[2]), eval_node(node[3])
    if op == "+":
        return _check(a + b)
    if op == "-":
        return _check(a - b)
    if op == "*":
        return _check(a * b)
    if op == "/":
        if b == 0:
            raise CalculationError("division by zero")
        return _check(a / b)
    # power
    if abs(b) > MAX_EXPONENT:
        raise CalculationError(f"exponent {_fmt(b)} is too large")
    if a < 0 and not float(b).is_integer():
        raise CalculationError("fractional power of a negative number")
    if a == 0 and b < 0:
        raise CalculationError("division by zero")
    try:
        return _check(math.pow(a, b))
    except OverflowError as exc:
        raise CalculationError("result is too large") from exc


def render(node: Node, parent_bp: int = 0) -> str:
    kind = node[0]
    if kind == "num":
        return _fmt(node[1])
    if kind == "neg":
        return f"-{render(node[1], _PREFIX_BP)}"
    if kind == "pct":
        return f"{render(node[1], _POSTFIX_BP)}%"
    if kind == "call":
        return f"{node[1]}({', '.join(render(a) for a in node[2])})"
    op = node[1]
    lbp, rbp = _INFIX_BP[op]
    text = f"{render(node[2], lbp)} {op} {render(node[3], rbp)}"
    return f"({text})" if lbp < parent_bp else text


def evaluate(expression: str) -> CalcResult:
    """Evaluate a bare expression (``2 * (3 + 4)``, ``sqrt(16) + 15% * 240``)."""
    node = parse(expression)
    return CalcResult(eval_node(node), render(node))


# ----------------------------------------------------------------------------- extraction
_NUM = r"-?\d+(?:\.\d+)?"
_LIST_SEP = r"\s*(?:,|、|;|\band\b|和|与|以及|及|跟|&)\s*"
_LIST = rf"{_NUM}(?:{_LIST_SEP}{_NUM})+"

# (pattern, replacement) applied in order after numbers are normalised to digits.
_REWRITES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = []


def _rw(pattern: str, repl: str | Callable[[re.Match[str]], str], flags: int = re.IGNORECASE) -> None:
    _REWRITES.append((re.compile(pattern, flags), repl))


def _list_args(s: str) -> str:
    return ", ".join(re.findall(_NUM, s))


_AGG_EN = {
    "average": "avg",
    "mean": "avg",
    "sum": "sum",
    "total": "sum",
    "product": "product",
    "minimum": "min",
    "min": "min",
    "maximum": "max",
    "max": "max",
}
_AGG_ZH = {
    "平均值": "avg",
    "平均数": "avg",
    "平均": "avg",
    "总和": "sum",
    "之和": "sum",
    "和": "sum",
    "乘积": "product",
    "之积": "product",
    "积": "product",
    "最大值": "max",
    "最小值": "min",
}
# aggregates
_rw(
    rf"\b(average|mean|sum|total|product|minimum|maximum|min|max)\s+(?:value\s+)?of\s+(?:the\s+numbers\s+)?({_LIST})",
    lambda m: f" {_AGG_EN[m.group(1).lower()]}({_list_args(m.group(2))}) ",
)
_rw(
    rf"(?:求)?({_LIST})\s*(?:这几个数)?\s*的\s*(平均值|平均数|平均|总和|之和|乘积|之积|最大值|最小值|和|积)",
    lambda m: f" {_AGG_ZH[m.group(2)]}({_list_args(m.group(1))}) ",
)
_rw(rf"(?:the\s+)?difference\s+between\s+({_NUM})\s+and\s+({_NUM})", r" (\1 - \2) ")
_rw(rf"({_NUM})\s*(?:与|和|跟)\s*({_NUM})\s*的差", r" (\1 - \2) ")
_rw(rf"({_NUM})\s*(?:与|和|跟)\s*({_NUM})\s*的商", r" (\1 / \2) ")
# roots and powers
_rw(r"\b(?:the\s+)?square\s+root\s+of\s+", " sqrt ")
_rw(r"\b(?:the\s+)?cube\s+root\s+of\s+", " cbrt ")
_rw(rf"({_NUM})\s*的\s*(?:平方根|开平方)", r" sqrt(\1) ")
_rw(rf"({_NUM})\s*的\s*立方根", r" cbrt(\1) ")
_rw(rf"(?:根号|开方|平方根)\s*({_NUM})", r" sqrt(\1) ")
_rw(rf"\bsqrt\s+({_NUM})", r" sqrt(\1) ")
_rw(rf"\bcbrt\s+({_NUM})", r" cbrt(\1) ")
_rw(r"\s*的\s*平方", " ^ 2 ")
_rw(r"\s*的\s*立方", " ^ 3 ")
_rw(rf"\s*的\s*({_NUM})\s*次(?:方|幂)", r" ^ \1 ")
_rw(r"\bsquared\b", " ^ 2 ")
_rw(r"\bcubed\b", " ^ 3 ")
_rw(r"\b(?:to\s+the\s+power\s+of|raised\s+to(?:\s+the\s+power\s+of)?|to\s+the)\b", " ^ ")
_rw(r"(?<=\d)(?:st|nd|rd|th)\s+power\b", " ")
# percentages: "15% of 240", "240的15%", "15 percent of 240"
_rw(r"\s*(?:percent|per\s+cent|pct)\b", "%")
_rw(r"%\s*(?:of\b|的)", "% * ")
_rw(rf"({_NUM})\s*/\s*({_NUM})\s+of\b", r" (\1 / \2) * ")
_rw(r"\bhalf\s+of\b", " 0.5 * ")
_rw(r"\b(?:a\s+)?quarter\s+of\b", " 0.25 * ")
_rw(rf"({_NUM})\s*的\s*(?=\(?{_NUM}\s*%)", r"\1 * ")
# operator words
_rw(r"\bmultiplied\s+by\b|\btimes\b", " * ")
_rw(r"\bdivided\s+by\b|\bover\b", " / ")
_rw(r"\bplus\b|\badded\s+to\b", " + ")
_rw(r"\bminus\b", " - ")
_rw(r"(?<=\d)\s*[xX]\s*(?=[\d(])", " * ")
_rw(r"乘以|乘上|乘", " * ")
_rw(r"除以", " / ")
_rw(r"加上|加", " + ")
_rw(r"减去|减", " - ")
_rw(r"[（]", "(")
_rw(r"[）]", ")")
_rw(r"，", ", ")

_MATH_CHARS = re.compile(
    r"(?:sqrt|cbrt|avg|sum|product|min|max|abs|pi|\d+(?:\.\d+)?|[-+*/^%(),.\s])+", re.IGNORECASE
)


def rewrite(text: str) -> str:
    """Free text → text whose arithmetic is in operator form (exposed for tests/debugging)."""
    text = normalize_numbers(text)
    for pattern, repl in _REWRITES:
        text = pattern.sub(repl, text)  # type: ignore[arg-type]
    return text


def _candidates(text: str) -> list[str]:
    spans = []
    for m in _MATH_CHARS.finditer(text):
        span = m.group(0).strip(" ,.")
        if re.search(r"\d", span):
            spans.append(span)
    return spans


def _score(span: str) -> tuple[int, int]:
    ops = len(re.findall(r"[-+*/^%]|sqrt|cbrt|avg|sum|product|min|max|abs", span))
    return ops, len(re.findall(r"\d+(?:\.\d+)?", span))


def _trim(span: str) -> list[str]:
    """The span and versions with dangling operators/parentheses removed."""
    out = [span]
    s = span
    s = re.sub(r"^[\s*/^%),]+", "", s)
    s = re.sub(r"[\s+\-*/^(,]+$", "", s)
    out.append(s)
    opens, closes = s.count("("), s.count(")")
    if opens > closes:
        out.append(s + ")" * (opens - closes))
    elif closes > opens:
        out.append(s.rstrip(")") if s.endswith(")") else s)
    return out


def solve(text: str) -> CalcResult:
    """Find and evaluate the arithmetic in a free-text request (English or Chinese)."""
    if not text or not text.strip():
        raise NoExpressionFound("empty request: nothing to calculate")
    if len(text) > MAX_INPUT_CHARS:
        raise UnsafeExpression(f"request longer than {MAX_INPUT_CHARS} characters")
    if "__" in text or re.search(r"\b(?:import|lambda|exec|eval|os|sys|open)\s*\(", text):
        raise UnsafeExpression("the request contains code; the calculator only reads arithmetic")
    rewritten = rewrite(text)
    spans = sorted(_candidates(rewritten), key=_score, reverse=True)
    last_error: Exception | None = None
    for span in spans:
        if _score(span)[0] == 0 and _score(span)[1] < 2:
            continue
        for candidate in _trim(span):
            try:
                node = parse(candidate)
            except UnsafeExpression as exc:
                last_error = exc
                continue
            if node[0] == "num" or (node[0] == "neg" and node[1][0] == "num"):
                continue  # a lone (negative) number is not arithmetic: "PR-111", "-5"
            return CalcResult(eval_node(node), render(node))
    if last_error is not None and spans:
        raise NoExpressionFound(f"could not read an arithmetic expression in {text[:80]!r} ({last_error})")
    raise NoExpressionFound(f"no arithmetic found in {text[:80]!r}")
