"""A small subset of Go's text/template, enough for Prometheus-style annotations.

Engineers copy annotations from Prometheus rule files, so ``{{ $value }}``,
``{{ $labels.sensor }}``, ``{{ $value | printf "%.1f" }}``, ``{{ printf "%.0f" $value }}``
and ``{{ humanize $value }}`` must work as there. Control structures (if/range) are not
supported; the checker reports them at load time, with the rule's position.

Extra variables beyond Prometheus: ``$sensors`` (comma-separated sensors behind a
district-scope alert) and ``$observed`` (the raw observed value of an anomaly rule).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class TemplateError(ValueError):
    pass


_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<num>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<var>\$[A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*)
      | (?P<dot>(?:\.[A-Za-z_][A-Za-z_0-9]*)+|\.)
      | (?P<pipe>\|)
      | (?P<ident>[A-Za-z_][A-Za-z_0-9]*)
    )""",
    re.VERBOSE,
)


def go_float(x: float) -> str:
    """Format like Go's ``%v`` for float64 (shortest repr, exponent from 1e6 / below 1e-4, as strconv .g. -1)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    d = Decimal(repr(float(x)))
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # decimal point position relative to the digit string
    dp = len(digits) + exp
    e10 = dp - 1
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{'-' if sign else ''}{mant}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    if dp <= 0:
        s = "0." + "0" * (-dp) + ds
    elif dp >= len(ds):
        s = ds + "0" * (dp - len(ds))
    else:
        s = ds[:dp] + "." + ds[dp:]
    return ("-" if sign else "") + s


def to_text(v: Any) -> str:
    if isinstance(v, float):
        return go_float(v)
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{to_text(v[k])}" for k in sorted(v)) + "]"
    return str(v)


_VERB = re.compile(r"%([-+ #0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def go_printf(fmt: str, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs annotations use (v s d f e g x q t %)."""
    out: list[str] = []
    pos = 0
    ai = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[ai]
        ai += 1
        spec = "%" + flags + width + (f".{prec}" if prec is not None else "")
        try:
            if verb in "feEgG":
                out.append((spec + verb) % float(arg))
            elif verb == "d":
                out.append((spec + "d") % int(float(arg)))
            elif verb in "xX":
                out.append((spec + verb) % int(float(arg)))
            elif verb == "q":
                out.append('"' + to_text(arg).replace("\\", "\\\\").replace('"', '\\"') + '"')
            elif verb == "t":
                out.append("true" if arg else "false")
            else:  # v, s
                out.append((spec + "s") % to_text(arg))
        except (TypeError, ValueError):
            out.append(f"%!{verb}({type(arg).__name__}={to_text(arg)})")
    out.append(fmt[pos:])
    if ai < len(args):
        out.append("%!(EXTRA " + ", ".join(to_text(a) for a in args[ai:]) + ")")
    return "".join(out)


def humanize(v: Any) -> str:
    """Prometheus ``humanize``: SI prefixes, 4 significant digits."""
    x = float(v)
    if x == 0 or math.isnan(x) or math.isinf(x):
        return f"{x:.4g}"
    if abs(x) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(x) < 1000:
                break
            prefix = p
            x /= 1000
        return f"{x:.4g}{prefix}"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(x) >= 1:
            break
        prefix = p
        x *= 1000
    return f"{x:.4g}{prefix}"


def humanize_duration(v: Any) -> str:
    """Prometheus ``humanizeDuration`` (seconds in, ``1d 2h 3m 4s`` out)."""
    x = float(v)
    if math.isnan(x) or math.isinf(x):
        return f"{x:.4g}"
    if x == 0:
        return "0s"
    if abs(x) < 1:
        prefix = ""
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(x) >= 1:
                break
            prefix = p
            x *= 1000
        return f"{x:.4g}{prefix}s"
    sign = "-" if x < 0 else ""
    x = abs(x)
    secs = int(x) % 60
    mins = int(x) // 60 % 60
    hours = int(x) // 3600 % 24
    days = int(x) // 86400
    if days:
        return f"{sign}{days}d {hours}h {mins}m {secs}s"
    if hours:
        return f"{sign}{hours}h {mins}m {secs}s"
    if mins:
        return f"{sign}{mins}m {secs}s"
    return f"{sign}{x:.4g}s"


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "printf": go_printf,
    "humanize": humanize,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": lambda v: f"{float(v) * 100:.4g}%",
    "toUpper": lambda s: to_text(s).upper(),
    "toLower": lambda s: to_text(s).lower(),
    "title": lambda s: to_text(s).title(),
    "print": lambda *a: "".join(to_text(x) for x in a),
}


@dataclass(frozen=True)
class _Operand:
    kind: str  # str num var dot ident
    value: Any


def _tokenise(expr: str) -> list[_Operand]:
    toks: list[_Operand] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {expr[pos:].strip()!r} in template action")
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "str":
            val: Any = (
                raw[1:-1]
                if raw[0] == "`"
                else re.sub(
                    r"\\(.)",
                    lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                    raw[1:-1],
                )
            )
        elif kind == "num":
            val = float(raw)
        else:
            val = raw
        toks.append(_Operand(kind, val))
    return toks


_CONTROL = {"if", "else", "end", "range", "with", "define", "template", "block"}


class Template:
    """A compiled annotation template; ``render(value=..., labels=..., extra=...)``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[str | list[list[_Operand]]] = []
        pos = 0
        pending_trim = False
        for m in _ACTION.finditer(text):
            lit = text[pos : m.start()]
            if pending_trim:
                lit = lit.lstrip()
            if m.group(1):
                lit = lit.rstrip()
            self._parts.append(lit)
            pending_trim = bool(m.group(3))
            body = m.group(2).strip()
            if body.startswith("/*"):
                pos = m.end()
                continue
            cmds: list[list[_Operand]] = [[]]
            for tok in _tokenise(body):
                if tok.kind == "pipe":
                    cmds.append([])
                else:
                    cmds[-1].append(tok)
            if any(not c for c in cmds):
                raise TemplateError(f"empty command in {{{{{m.group(2)}}}}}")
            first = cmds[0][0]
            if first.kind == "ident" and first.value in _CONTROL:
                raise TemplateError(f"template action {first.value!r} is not supported")
            for c in cmds:
                head = c[0]
                if (
                    head.kind == "ident"
                    and head.value not in FUNCTIONS
                    and head.value
                    not in (
                        "true",
                        "false",
                        "nil",
                    )
                ):
                    raise TemplateError(f"function {head.value!r} not defined")
            for c in cmds[1:]:
                if c[0].kind != "ident":
                    raise TemplateError("only a function may follow '|' in a pipeline")
            self._parts.append(cmds)
            pos = m.end()
        lit = text[pos:]
        if pending_trim:
            lit = lit.lstrip()
        if "{{" in lit:
            raise TemplateError("unclosed action '{{'")
        self._parts.append(lit)

    def references(self) -> list[str]:
        """The variables and fields the template reads, as written (``$labels.district``,
        ``.Labels.sensor``, ``$value``): what the checker compares with what an alert of
        the rule will carry, so a typo fails ``rules check`` instead of paging
        "<no value>"."""
        return [op.value for part in self._parts if not isinstance(part, str)
                for cmd in part for op in cmd if op.kind in ("var", "dot")]

    @staticmethod
    def _operand(op: _Operand, env: Mapping[str, Any], dot: Mapping[str, Any]) -> Any:
        if op.kind in ("str", "num"):
            return op.value
        if op.kind == "ident":
            return {"true": True, "false": False, "nil": None}[op.value]
        if op.kind == "var":
            name, *fields = op.value.split(".")
            cur: Any = env.get(name[1:] if name != "$" else "", None) if name != "$" else dot
        else:  # dot
            fields = [f for f in op.value.split(".") if f]
            cur = dot
        for f in fields:
            cur = cur.get(f) if isinstance(cur, Mapping) else None
        return cur

    def _eval(
        self, cmds: list[list[_Operand]], env: Mapping[str, Any], dot: Mapping[str, Any]
    ) -> Any:
        val: Any = None
        for i, cmd in enumerate(cmds):
            head = cmd[0]
            args = [self._operand(o, env, dot) for o in cmd[1:]]
            if head.kind == "ident" and head.value in FUNCTIONS:
                if i > 0:
                    args.append(val)
                val = FUNCTIONS[head.value](*args)
            else:
                if len(cmd) > 1:
                    raise TemplateError("can't give argument to non-function")
                val = self._operand(head, env, dot)
        return val

    def render(
        self,
        value: Any = None,
        labels: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        labels = dict(labels or {})
        env = {"value": value, "labels": labels, "externalLabels": {}, **(extra or {})}
        dot = {"Value": value, "Labels": labels}
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                try:
                    out.append(to_text(self._eval(part, env, dot)))
                except Exception as exc:  # noqa: BLE001 -- Prometheus renders the error into the text too
                    return f"<error expanding template: {exc}>"
        return "".join(out)
