"""YAML -> plain data plus the line/column of every key, so errors can say FILE:LINE:COL.

The resolver is YAML 1.2-like on purpose: PyYAML's 1.1 defaults read ``08:30`` as the integer
510, ``no``/``off`` as false and ``+15551234567`` as a number, all of which silently corrupt a
routing file (opening hours, language codes, phone numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:0|-?[1-9][0-9]*)$"), list("-0123456789")
)


@dataclass(slots=True)
class Located:
    """Parsed data and where each path starts (1-based line, column)."""

    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    errors: list[tuple[int, int, str]] = field(default_factory=list)

    def position(self, path: Path_) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            pos = self.marks.get(tuple(path[:cut]))
            if pos is not None:
                return pos
        return (1, 1)


class YamlSyntaxError(ValueError):
    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


def load_located(text: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError with a position on malformed input."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise YamlSyntaxError(
            line, col, f"YAML: {exc.reason} (character {exc.character!r})"
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(None, {(): (1, 1)})
        located = Located(None)
        located.marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
        _walk(loader, node, (), located)
        located.data = loader.construct_document(node)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(
            line, col, f"YAML syntax: {exc.problem or exc.context}"
        ) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise YamlSyntaxError(
            line, col, f"YAML: {exc.reason} (character {exc.character!r})"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, 1, f"YAML: {exc}") from None
    finally:
        loader.dispose()


def _walk(loader: _Loader, node: yaml.Node, path: Path_, out: Located) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                out.errors.append(
                    (
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        "mapping keys must be plain values",
                    )
                )
                continue
            if key in seen:
                out.errors.append(
                    (
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        f"duplicate key {key!r}",
                    )
                )
            seen.add(key)
            child = (*path, key if isinstance(key, (str, int)) else str(key))
            out.marks[child] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            _walk(loader, value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            out.marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(loader, item, child, out)
