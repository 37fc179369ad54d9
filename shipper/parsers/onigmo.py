"""Onigmo (Ruby syntax) regular expressions, as Fluent Bit compiles them, -> Python `re`.

Fluent Bit hands `Regex` to Onigmo in Ruby mode; most patterns are plain and mean the same in
Python once the named groups are respelt. What differs, and what is done about it:

* `(?<name>...)` -> `(?P<name>...)`; a name Python would refuse (`x-forwarded`, a name used
  twice) becomes `_gN`, and `names`/`ids` pair each Ruby name with its Python group.
* `/pattern/` and `/pattern/imx` (Fluent Bit strips the slashes and reads the flags);
  Ruby's `m` flag, inline `(?m)` too, is Python's DOTALL.
* `^`/`$` are line anchors in Ruby (re.MULTILINE); `\\d \\w \\s` are ASCII (re.ASCII);
  `\\h`/`\\H` hex digits; `\\z` -> `\\Z`; `\\Z` -> end or before a final newline; `\\e`; `\\R`;
  `\\k<name>` back references; POSIX brackets `[[:alpha:]]`; a `[` inside a class is literal.
* refused with an error that names the construct: `\\g<..>` calls, `\\K`, `\\G`, `\\X`, `\\p{..}`,
  `(?~..)` absence, class intersection `&&`, a nested class, inline flags not at the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_POSIX = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9a-fA-F",
    "word": r"\w",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}
_REFUSED = {
    "g": "subexpression calls (\\g<name>)",
    "K": "\\K (keep)",
    "G": "\\G (start of search)",
    "X": "\\X (grapheme cluster)",
    "p": "Unicode properties (\\p{...})",
    "P": "Unicode properties (\\P{...})",
    "y": "\\y (grapheme boundary)",
    "Y": "\\Y (grapheme boundary)",
    "O": "\\O (any character)",
}
_FLAGS = {"i": "i", "m": "s", "x": "x"}


class TranslateError(ValueError):
    """A construct Python's `re` cannot express (the message names it)."""


@dataclass(frozen=True, slots=True)
class Translated:
    regex: re.Pattern[str]
    names: tuple[str, ...]  # the Ruby names of the named groups, in order
    ids: tuple[str, ...]  # ids[i]: the Python name of the group called names[i]

    @property
    def direct(self) -> bool:
        """Every group kept its name: `groupdict()` is the record."""
        return self.names == self.ids


def _strip_slashes(pattern: str) -> tuple[str, str]:
    """Fluent Bit's str_to_regex: `/pat/` and `/pat/opts` (opts from i, m, x)."""
    if len(pattern) > 1 and pattern[0] == "/":
        end = pattern.rfind("/")
        if end > 0:
            opts = pattern[end + 1 :]
            if opts and all(c in "imx" for c in opts):
                return pattern[1:end], "".join(_FLAGS[c] for c in opts)
            if not opts:
                return pattern[1:end], ""
    return pattern, ""


class _Translator:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.out: list[str] = []
        self.names: list[str] = []
        self.ids: list[str] = []

    def fail(self, what: str) -> TranslateError:
        return TranslateError(f"{what} at position {self.i} is not supported")

    def bad(self, what: str) -> TranslateError:
        return TranslateError(f"invalid regular expression: {what} at position {self.i}")

    def run(self) -> str:
        src = self.src
        while self.i < len(src):
            ch = src[self.i]
            if ch == "\\":
                self.escape(in_class=False)
            elif ch == "[":
                self.char_class()
            elif ch == "(":
                self.group()
            else:
                self.out.append(ch)
                self.i += 1
        return "".join(self.out)

    def group(self) -> None:
        src, i = self.src, self.i
        if src.startswith("(?<", i) and i + 3 < len(src) and src[i + 3] not in "=!":
            end = src.find(">", i + 3)
            if end < 0:
                raise self.bad("an unterminated group name")
            self.open_named(src[i + 3 : end])
            self.i = end + 1
        elif src.startswith("(?'", i):
            end = src.find("'", i + 3)
            if end < 0:
                raise self.bad("an unterminated group name")
            self.open_named(src[i + 3 : end])
            self.i = end + 1
        elif src.startswith("(?~", i):
            raise self.fail("the absence operator (?~...)")
        elif src.startswith("(?", i) and (
            m := re.match(r"\(\?([imx]*)(?:-([imx]*))?([:)])", src[i:])
        ):
            on = "".join(_FLAGS[c] for c in m.group(1))
            off = "".join(_FLAGS[c] for c in (m.group(2) or ""))
            if m.group(3) == ")":
                if i != 0 or off:
                    raise self.fail("an inline flag group (?imx) not at the start of the pattern")
                self.out.append(f"(?{on})" if on else "")
            else:
                self.out.append(f"(?{on}{'-' + off if off else ''}:")
            self.i = i + m.end()
        else:
            self.out.append("(")
            self.i += 1

    def open_named(self, name: str) -> None:
        if not name:
            raise self.bad("an empty group name")
        keep = name.isidentifier() and name.isascii() and name not in self.names
        gid = name if keep and not name.startswith("_g") else f"_g{len(self.names)}"
        self.out.append(f"(?P<{gid}>")
        self.names.append(name)
        self.ids.append(gid)

    def escape(self, *, in_class: bool) -> None:
        src, i = self.src, self.i
        if i + 1 >= len(src):
            raise self.bad("a trailing backslash")
        c = src[i + 1]
        self.i = i + 2
        if c in _REFUSED:
            raise self.fail(_REFUSED[c])
        if c == "h":
            self.out.append("0-9a-fA-F" if in_class else "[0-9a-fA-F]")
        elif c == "H":
            if in_class:
                raise self.fail("\\H inside a character class")
            self.out.append("[^0-9a-fA-F]")
        elif c == "e":
            self.out.append(r"\x1b")
        elif c == "z" and not in_class:
            self.out.append(r"\Z")
        elif c == "Z" and not in_class:
            self.out.append(r"(?=\n?\Z)")
        elif c == "R" and not in_class:
            self.out.append(r"(?:\r\n|[\n\v\f\r\x85\u2028\u2029])")
        elif c == "k" and not in_class:
            self.back_reference()
        elif c == "x" and src.startswith("{", self.i):
            self.code_point()
        else:
            self.out.append("\\" + c)

    def back_reference(self) -> None:
        """\\k<name>, \\k'name', \\k<1>: after the `\\k`."""
        m = re.match(r"<([^>]+)>|'([^']+)'", self.src[self.i :])
        if not m:
            raise self.bad("a back reference without a name")
        name = m.group(1) or m.group(2)
        if name.isdigit():
            self.out.append(f"(?:\\{name})")
        elif name in self.names:
            idx = len(self.names) - 1 - self.names[::-1].index(name)
            self.out.append(f"(?P={self.ids[idx]})")
        else:
            raise self.bad(f"a back reference to unknown group {name!r}")
        self.i += m.end()

    def code_point(self) -> None:
        """\\x{HHHH}: after the `\\x`."""
        src = self.src
        end = src.find("}", self.i)
        if end < 0:
            raise self.bad("an unterminated \\x{...}")
        digits = src[self.i + 1 : end]
        if not re.fullmatch(r"[0-9a-fA-F]{1,6}", digits) or int(digits, 16) > 0x10FFFF:
            raise self.bad(f"\\x{{{digits}}}")
        self.out.append(f"\\U{int(digits, 16):08x}")
        self.i = end + 1

    def char_class(self) -> None:
        src = self.src
        self.out.append("[")
        self.i += 1
        if src.startswith("^", self.i):
            self.out.append("^")
            self.i += 1
        if src.startswith("]", self.i):  # a leading ] is literal
            self.out.append(r"\]")
            self.i += 1
        while self.i < len(src):
            ch = src[self.i]
            if ch == "]":
                self.out.append("]")
                self.i += 1
                return
            if ch == "\\":
                self.escape(in_class=True)
            elif ch == "[":
                m = re.match(r"\[:(\^?)([a-z]+):\]", src[self.i :])
                if m is None:
                    raise self.fail("a nested character class")
                if m.group(1) or m.group(2) not in _POSIX:
                    raise self.fail(f"POSIX class [:{m.group(1)}{m.group(2)}:]")
                self.out.append(_POSIX[m.group(2)])
                self.i += m.end()
            elif src.startswith("&&", self.i):
                raise self.fail("character class intersection (&&)")
            elif ch in "-|~" and src.startswith(ch * 2, self.i):
                # doubled set operators are literal here; Python warns about them
                self.out.append("\\" + ch + "\\" + ch)
                self.i += 2
            else:
                self.out.append(ch)
                self.i += 1
        raise self.bad("an unterminated character class")


def translate(pattern: str) -> Translated:
    """Compile a Fluent Bit `Regex` value (TranslateError says what cannot be translated)."""
    body, flags = _strip_slashes(pattern)
    tr = _Translator(body)
    text = tr.run()
    if flags:
        text = f"(?{flags})" + text
    try:
        regex = re.compile(text, re.MULTILINE | re.ASCII)
    except re.error as exc:
        raise TranslateError(f"invalid regular expression: {exc}") from None
    return Translated(regex, tuple(tr.names), tuple(tr.ids))
