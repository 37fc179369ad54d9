"""Fluent Bit's YAML configuration format -> Document.

The file is composed, never constructed: composed nodes keep the scalar text exactly as written
(`on`, `0755`, `1.10` stay strings, as libyaml hands them to Fluent Bit) and carry the line of
every key and value for error messages.

Top level (keys case-insensitive, as in Fluent Bit): `env`, `includes`, `service`, `pipeline`
(`inputs`, `filters`, `outputs`), `parsers`, `multiline_parsers`. Anything else is an error
rather than silently ignored, because a misspelt `pipline:` would otherwise start a shipper
that ships nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shipper.config.classic import IncludeTracker, RawProp, RawSection, Variables, read_text
from shipper.config.model import ConfigError, Document

logger = logging.getLogger(__name__)

_PIPELINE = {"inputs": "input", "filters": "filter", "outputs": "output"}
_LISTS = {"parsers": "parser", "multiline_parsers": "multiline_parser"}
_TOP_LEVEL = ("env", "includes", "service", "pipeline", *_LISTS)
# a YAML multiline rule's fields, in the order the classic `rule` line takes them
_RULE_FIELDS = ("state", "regex", "next_state")


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _pairs(node: Node, *, file: str, what: str, key: str) -> list[tuple[str, ScalarNode, Node]]:
    """The (key text, key node, value node) pairs of a mapping node, keys must be scalars."""
    if not isinstance(node, MappingNode):
        raise ConfigError(f"{what} must be a mapping", file=file, line=_line(node), key=key)
    pairs: list[tuple[str, ScalarNode, Node]] = []
    for knode, vnode in node.value:
        if isinstance(knode, ScalarNode) and knode.tag == "tag:yaml.org,2002:merge":
            raise ConfigError(
                "YAML merge keys (<<) are not supported", file=file, line=_line(knode), key=key
            )
        if not isinstance(knode, ScalarNode):
            raise ConfigError(
                f"keys in {what} must be plain strings", file=file, line=_line(knode), key=key
            )
        if not knode.value:
            raise ConfigError(f"empty key in {what}", file=file, line=_line(knode), key=key)
        pairs.append((knode.value, knode, vnode))
    return pairs


def _items(node: Node, *, file: str, key: str) -> list[Node]:
    if not isinstance(node, SequenceNode):
        raise ConfigError("expected a list", file=file, line=_line(node), key=key)
    return list(node.value)


def _scalar(node: Node, *, file: str, key: str) -> str:
    if not isinstance(node, ScalarNode):
        raise ConfigError("expected a single value", file=file, line=_line(node), key=key)
    # classic cannot express an empty value either (`key has an empty value` in Fluent Bit)
    value = str(node.value).strip()
    if not value:
        raise ConfigError("key has no value", file=file, line=_line(node), key=key)
    return value


def _quote(value: str) -> str:
    # flb_slist's tokenizer unescapes only \" inside a quoted token, so that is all we escape
    return '"' + value.replace('"', '\\"') + '"'


class _YamlReader:
    def __init__(self, top_file: str, env: Mapping[str, str]) -> None:
        self.vars = Variables(env)
        self.includes = IncludeTracker(top_file)
        self.sections: list[RawSection] = []

    def read(self, path: str, text: str) -> None:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            problem = exc.problem or exc.context or "invalid YAML"
            raise ConfigError(f"invalid YAML: {problem}", file=path, line=line) from None
        except yaml.reader.ReaderError as exc:  # a character YAML forbids: no mark, a position
            line = text.count("\n", 0, exc.position) + 1
            msg = f"invalid YAML: character {exc.character!r} is not allowed"
            raise ConfigError(msg, file=path, line=line) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", file=path) from None
        except RecursionError:
            raise ConfigError("invalid YAML: nested too deeply", file=path) from None
        if root is None:  # an empty file (or only comments) configures nothing
            return
        for name, knode, vnode in _pairs(root, file=path, what="the top level", key=""):
            kind = name.lower()
            if kind == "env":
                self.env(vnode, file=path)
            elif kind == "includes":
                self.include_all(vnode, file=path, key=name)
            elif kind == "service":
                self.section("service", vnode, file=path, key=name, line=_line(knode))
            elif kind == "pipeline":
                self.pipeline(vnode, file=path, key=name)
            elif kind in _LISTS:
                for item in _items(vnode, file=path, key=name):
                    self.plugin(_LISTS[kind], item, file=path, key=name)
            else:
                raise ConfigError(
                    f"unknown top-level key (expected one of {', '.join(_TOP_LEVEL)})",
                    file=path,
                    line=_line(knode),
                    key=name,
                )

    def env(self, node: Node, *, file: str) -> None:
        for name, knode, vnode in _pairs(node, file=file, what="env", key="env"):
            if not isinstance(vnode, ScalarNode):
                raise ConfigError(
                    "an env variable needs a single value", file=file, line=_line(vnode), key=name
                )
            # like classic @SET: a later definition wins; ${...} in it is expanded right away
            self.vars.defined[name] = self.vars.expand(
                vnode.value, file=file, line=_line(knode), key=name
            )

    def include_all(self, node: Node, *, file: str, key: str) -> None:
        for item in _items(node, file=file, key=key):
            line = _line(item)
            target = self.vars.expand(
                _scalar(item, file=file, key=key), file=file, line=line, key=key
            )
            for path in self.includes.resolve(target, file=file, line=line, key=key):
                self.includes.enter(path, file=file, line=line, key=key)
                self.read(path, read_text(path, file=file, line=line, key=key))
                self.includes.leave()

    def pipeline(self, node: Node, *, file: str, key: str) -> None:
        for name, knode, vnode in _pairs(node, file=file, what="pipeline", key=key):
            kind = _PIPELINE.get(name.lower())
            if kind is None:
                raise ConfigError(
                    "unknown pipeline component (expected inputs, filters or outputs)",
                    file=file,
                    line=_line(knode),
                    key=name,
                )
            for item in _items(vnode, file=file, key=name):
                self.plugin(kind, item, file=file, key=name)

    def plugin(self, kind: str, node: Node, *, file: str, key: str) -> None:
        section = self.section(kind, node, file=file, key=key, line=_line(node))
        if not any(p.key.lower() == "name" for p in section.props):
            raise ConfigError(
                f"every {kind} entry needs a name", file=file, line=section.line, key="name"
            )

    def section(self, kind: str, node: Node, *, file: str, key: str, line: int) -> RawSection:
        section = RawSection(kind, file, line)
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            pairs = []  # `service:` with nothing under it
        else:
            pairs = _pairs(node, file=file, what=f"the {kind} entry", key=key)
        for name, knode, vnode in pairs:
            if kind == "multiline_parser" and name.lower() == "rules":
                section.props.extend(self.rules(vnode, file=file, key=name))
            elif isinstance(vnode, SequenceNode):
                # `header: [a, b]` means the key repeated, as classic writes it line by line
                for item in vnode.value:
                    section.props.append(
                        RawProp(name, _scalar(item, file=file, key=name), file, _line(item))
                    )
            elif isinstance(vnode, MappingNode):
                raise ConfigError(
                    "nested mappings (such as processors) are not supported here",
                    file=file,
                    line=_line(knode),
                    key=name,
                )
            else:
                section.props.append(
                    RawProp(name, _scalar(vnode, file=file, key=name), file, _line(knode))
                )
        self.sections.append(section)
        return section

    def rules(self, node: Node, *, file: str, key: str) -> list[RawProp]:
        """`rules:` items -> `rule "state" "regex" "next"` props, exactly as classic has them."""
        props = []
        for item in _items(node, file=file, key=key):
            fields = {
                name.lower(): (_scalar(vnode, file=file, key=name), knode)
                for name, knode, vnode in _pairs(item, file=file, what="a rule", key=key)
            }
            for name, (_, knode) in fields.items():
                if name not in _RULE_FIELDS:
                    raise ConfigError(
                        f"unknown rule field (expected {', '.join(_RULE_FIELDS)})",
                        file=file,
                        line=_line(knode),
                        key=name,
                    )
            missing = [f for f in _RULE_FIELDS if f not in fields]
            if missing:
                raise ConfigError(
                    f"rule is missing {', '.join(missing)}",
                    file=file,
                    line=_line(item),
                    key=missing[0],
                )
            value = " ".join(_quote(fields[f][0]) for f in _RULE_FIELDS)
            props.append(RawProp("rule", value, file, _line(item)))
        return props


def load_yaml(path: str, *, env: Mapping[str, str]) -> Document:
    """Read and parse the Fluent Bit YAML file at `path` (includes expanded)."""
    reader = _YamlReader(path, env)
    reader.read(path, read_text(path))
    return reader.vars.freeze(reader.sections, path)
