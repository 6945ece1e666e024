"""YAML with positions: every key's and value's line and column, so a problem found in the
parsed data (a pydantic error, a lint check, a KQL diagnostic inside `query`) can point at
the file, line and column an author edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


class YamlFileError(Exception):
    def __init__(self, path: Path, position: Position, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.position = position
        self.message = message


@dataclass(frozen=True)
class ScalarSource:
    """Where a scalar value sits in the file, to map offsets inside it back to the file."""

    start: Position  # where the value's node starts (the `|` of a block scalar)
    style: str | None  # None (plain), "'", '"', "|" or ">"
    value: str
    lines: tuple[str, ...]  # the file's lines, for literal blocks

    def position(self, offset: int) -> Position:
        """The file position of character `offset` of the value.

        Exact for literal blocks (`query: |`, how rules are written) and for single-line
        plain or quoted values without escapes; elsewhere (folded blocks, escapes) the start
        of the value, which is still the right key.
        """
        offset = max(0, min(offset, len(self.value)))
        line_index = self.value.count("\n", 0, offset)
        column = offset - (self.value.rfind("\n", 0, offset) + 1)
        if self.style == "|":
            indent = self._block_indent()
            if indent is not None:
                # Content starts on the line after the indicator, one file line per value line.
                return Position(self.start.line + 1 + line_index, indent + column + 1)
        elif "\n" not in self.value:
            opening = 1 if self.style in ("'", '"') else 0
            file_line = self.lines[self.start.line - 1] if self.lines else ""
            at = self.start.column - 1 + opening
            if file_line[at : at + len(self.value)] == self.value:
                return Position(self.start.line, self.start.column + opening + offset)
        return self.start

    def _block_indent(self) -> int | None:
        """The block's indentation, confirmed against every non-empty line of the value."""
        value_lines = self.value.split("\n")
        first = self.start.line  # 0-based index of the first content line in self.lines
        indent = None
        for index, text in enumerate(value_lines):
            if not text.strip():
                continue
            if first + index >= len(self.lines):
                return None
            file_line = self.lines[first + index]
            candidate = len(file_line) - len(text)
            if candidate < 0 or file_line[candidate:] != text:
                return None
            if indent is None:
                indent = candidate
            elif candidate != indent:
                return None
        return indent


@dataclass(frozen=True)
class YamlDocument:
    path: Path
    text: str
    data: Any
    keys: dict[PathKey, Position]  # where each mapping key is written
    values: dict[PathKey, Position]  # where each value starts
    scalars: dict[PathKey, ScalarSource]

    def position(self, path: PathKey) -> Position:
        """The closest known position for `path`: a scalar value itself, else its key, else
        the nearest parent's key."""
        if path in self.scalars:
            return self.values[path]
        for end in range(len(path), 0, -1):
            sub = tuple(path[:end])
            if sub in self.keys:
                return self.keys[sub]
            if sub in self.values:
                return self.values[sub]
        return Position(1, 1)


def _mark(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def load_yaml(path: Path, text: str | None = None) -> YamlDocument:
    """Parse one YAML document with positions. Raises YamlFileError on invalid YAML."""
    text = path.read_text(encoding="utf-8") if text is None else text
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _mark(mark) if mark else Position(1, 1)
        raise YamlFileError(path, position, f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(path, Position(1, 1), f"invalid YAML: {exc}") from None
    keys: dict[PathKey, Position] = {}
    values: dict[PathKey, Position] = {}
    scalars: dict[PathKey, ScalarSource] = {}
    lines = tuple(text.split("\n"))

    def walk(current: yaml.Node | None, at: PathKey) -> None:
        if current is None:
            return
        values[at] = _mark(current.start_mark)
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                child = (*at, key_node.value)
                keys[child] = _mark(key_node.start_mark)
                walk(value_node, child)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                walk(item, (*at, index))
        elif isinstance(current, yaml.ScalarNode):
            scalars[at] = ScalarSource(
                _mark(current.start_mark), current.style, current.value, lines
            )

    walk(node, ())
    return YamlDocument(path, text, data, keys, values, scalars)
