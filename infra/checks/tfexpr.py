"""A small evaluator of Terraform expressions, for the `validation` conditions of infra/variables.tf:
literals (numbers, strings without interpolation, true/false/null, lists), `var.<name>`, the
operators ! - * / % + - < <= > >= == != && || and ?:, parentheses, and the functions those
conditions use (can, regex, coalesce, contains, length, split, trimspace, lower, upper, tostring,
tonumber, floor, ceil, abs, max, min). Anything else raises Unsupported, so that a check reports
"cannot evaluate" rather than guessing. Evaluation errors (e.g. regex() without a match) raise EvalError, which can() catches,
as in Terraform."""
import math
import re


class Unsupported(Exception):
    """The expression uses something this evaluator does not implement."""


class EvalError(Exception):
    """Terraform would fail evaluating the expression (what can() turns into false)."""


TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:(),\[\].])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
""", re.X)


def tokens(text):
    out, at = [], 0
    while at < len(text):
        m = TOKEN.match(text, at)
        if not m:
            raise Unsupported(f"cannot read {text[at:at + 20]!r}")
        at = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def string_literal(tok):
    body = tok[1:-1]
    if "${" in body or "%{" in body:
        raise Unsupported("string templates are not evaluated")
    return re.sub(r'\\(["\\nrt])', lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _tf_regex(pattern, value):
    if not isinstance(pattern, str) or not isinstance(value, str):
        raise EvalError("regex() takes strings")
    m = re.search(pattern, value)
    if not m:
        raise EvalError("regex(): no match")
    return m.group(0)


def _coalesce(*args):
    for a in args:
        if a is not None and a != "":
            return a
    raise EvalError("coalesce(): no non-null, non-empty argument")


def _length(v):
    if v is None:
        raise EvalError("length(null)")
    return len(v)


def _number(v):
    if isinstance(v, bool) or v is None:
        raise EvalError(f"not a number: {v!r}")
    try:
        return float(v) if "." in str(v) else int(v)
    except ValueError:
        raise EvalError(f"not a number: {v!r}")


FUNCTIONS = {
    "regex": _tf_regex,
    "coalesce": _coalesce,
    "contains": lambda lst, v: v in lst,
    "length": _length,
    "split": lambda sep, s: s.split(sep),
    "trimspace": lambda s: s.strip(),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "tostring": lambda v: v if isinstance(v, str) else str(v),
    "tonumber": _number,
    "floor": lambda v: math.floor(_number(v)),
    "ceil": lambda v: math.ceil(_number(v)),
    "abs": lambda v: abs(_number(v)),
    "max": lambda *v: max(_number(x) for x in v),
    "min": lambda *v: min(_number(x) for x in v),
}


class Parser:
    """Recursive descent, Terraform's precedence: ?: < || < && < ==,!= < comparisons < +,- < *,/,% < unary."""

    def __init__(self, text, variables):
        self.toks = tokens(text)
        self.i = 0
        self.vars = variables

    def peek(self, value=None):
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        return tok if value is None or tok[1] == value else None

    def take(self, value=None):
        tok = self.peek(value)
        if tok is None:
            raise Unsupported(f"expected {value or 'more'} at token {self.i}")
        self.i += 1
        return tok

    def parse(self):
        """Returns a thunk (lazy, so that can() sees errors and && short-circuits)."""
        node = self.conditional()
        if self.i != len(self.toks):
            raise Unsupported(f"unexpected {self.toks[self.i][1]!r}")
        return node

    def conditional(self):
        cond = self.binary(0)
        if self.peek("?"):
            self.take("?")
            yes = self.conditional()
            self.take(":")
            no = self.conditional()
            return lambda: yes() if truth(cond()) else no()
        return cond

    LEVELS = [["||"], ["&&"], ["==", "!="], ["<", "<=", ">", ">="], ["+", "-"], ["*", "/", "%"]]

    def binary(self, level):
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() and self.peek()[0] == "op" and self.peek()[1] in self.LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = combine(op, left, right)
        return left

    def unary(self):
        if self.peek("!"):
            self.take()
            inner = self.unary()
            return lambda: not truth(inner())
        if self.peek("-"):
            self.take()
            inner = self.unary()
            return lambda: -_number(inner())
        return self.postfix()

    def postfix(self):
        node = self.primary()
        while self.peek("["):
            self.take("[")
            index = self.conditional()
            self.take("]")
            node = (lambda n, ix: lambda: _index(n(), ix()))(node, index)
        return node

    def primary(self):
        kind, text = self.take()
        if kind == "num":
            value = float(text) if "." in text else int(text)
            return lambda: value
        if kind == "str":
            value = string_literal(text)
            return lambda: value
        if text == "(":
            node = self.conditional()
            self.take(")")
            return node
        if text == "[":
            items = []
            while not self.peek("]"):
                items.append(self.conditional())
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return lambda: [item() for item in items]
        if kind == "name":
            if text in ("true", "false", "null"):
                value = {"true": True, "false": False, "null": None}[text]
                return lambda: value
            if text == "var" and self.peek("."):
                self.take(".")
                name = self.take()[1]
                if name not in self.vars:
                    raise Unsupported(f"var.{name} has no value here")
                value = self.vars[name]
                return lambda: value
            if self.peek("("):
                self.take("(")
                args = []
                while not self.peek(")"):
                    args.append(self.conditional())
                    if not self.peek(")"):
                        self.take(",")
                self.take(")")
                if text == "can":
                    if len(args) != 1:
                        raise Unsupported("can() takes one argument")
                    return lambda: _can(args[0])
                if text not in FUNCTIONS:
                    raise Unsupported(f"function {text}() is not evaluated here")
                fn = FUNCTIONS[text]
                return lambda: _call(fn, text, [a() for a in args])
        raise Unsupported(f"cannot evaluate {text!r}")


def _index(value, index):
    try:
        return value[index]
    except (KeyError, IndexError, TypeError):
        raise EvalError(f"no element {index!r}")


def _call(fn, name, args):
    try:
        return fn(*args)
    except EvalError:
        raise
    except (TypeError, AttributeError, ValueError) as e:
        raise EvalError(f"{name}(): {e}")


def _can(thunk):
    try:
        thunk()
        return True
    except EvalError:
        return False


def truth(v):
    if not isinstance(v, bool):
        raise EvalError(f"a condition must be true or false, got {v!r}")
    return v


def combine(op, left, right):
    if op == "&&":
        return lambda: truth(left()) and truth(right())
    if op == "||":
        return lambda: truth(left()) or truth(right())
    if op == "==":
        return lambda: left() == right()
    if op == "!=":
        return lambda: left() != right()
    arith = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
             "/": lambda a, b: a / b, "%": lambda a, b: a % b,
             "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
    return lambda: arith(_number(left()), _number(right()))


def hcl_value(raw):
    """A python-hcl2 value (strings keep their quotes, expressions are '${...}') as a plain value."""
    if isinstance(raw, str):
        if raw.startswith("${") and raw.endswith("}"):
            return evaluate(raw[2:-1], {})
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            return string_literal(raw)
        return raw
    if isinstance(raw, list):
        return [hcl_value(x) for x in raw]
    if isinstance(raw, dict):
        return {k.strip('"'): hcl_value(v) for k, v in raw.items() if not k.startswith("__")}
    return raw


def evaluate(expr, variables):
    """The value of a Terraform expression (without the ${ }), or raises Unsupported / EvalError."""
    return Parser(expr, variables).parse()()
