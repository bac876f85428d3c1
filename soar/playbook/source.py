"""YAML read with the position of every node, so every problem can be named `file:line:col`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from soar.errors import Diagnostic

Path = tuple[str | int, ...]
MAX_SOURCE_BYTES = 1_048_576
_MAX_DEPTH = 64
_MAX_FLOW_BRACKETS = 200  # far past any real playbook, well before the parser's recursion limit
_MAX_NODES = 50_000  # aliases can repeat a subtree exponentially ("billion laughs")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column."""

    line: int
    col: int


@dataclass(slots=True)
class Source:
    """One YAML document as plain data, with a map from data paths to the nodes they came from."""

    file: str
    text: str
    data: object
    values: dict[Path, Node] = field(default_factory=dict)
    keys: dict[Path, Node] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Where the value (or, with `key`, the key) at `path` starts; the nearest ancestor else."""
        probe = path
        while probe:
            node = (self.keys if key else self.values).get(probe)
            if node is not None:
                return _mark(node)
            key = False
            probe = probe[:-1]
        root = self.values.get(())
        return _mark(root) if root is not None else Position(1, 1)

    def diagnostic(self, path: Path, message: str, *, key: bool = False) -> Diagnostic:
        pos = self.position(path, key=key)
        return Diagnostic(self.file, pos.line, pos.col, message)

    def offset_position(self, path: Path, offset: int) -> Position:
        """Where character `offset` of the string value at `path` sits in the file.

        Exact for plain and quoted scalars on one line and for literal blocks; for folded or
        escaped scalars it falls back to the start of the scalar.
        """
        node = self.values.get(path)
        if not isinstance(node, ScalarNode):
            return self.position(path)
        start = _mark(node)
        value = str(node.value)
        lines = self.text.splitlines()
        if node.style in (None, "", '"', "'"):
            quote = 1 if node.style in ('"', "'") else 0
            row = start.line - 1
            if "\n" not in value and row < len(lines):
                raw = lines[row][start.col - 1 + quote :]
                if raw.startswith(value):
                    return Position(start.line, start.col + quote + offset)
            return start
        if node.style == "|":
            before = value[:offset]
            row_in_block = before.count("\n")
            col_in_line = len(before) - (before.rfind("\n") + 1)
            first = start.line  # the indicator line; content starts below it
            indent = _block_indent(lines, first)
            return Position(first + 1 + row_in_block, indent + 1 + col_in_line)
        return start


def _block_indent(lines: list[str], indicator_line: int) -> int:
    for text in lines[indicator_line:]:
        if text.strip():
            return len(text) - len(text.lstrip(" "))
    return 0


def _mark(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, source: Source, yaml: YAML) -> None:
        self.source = source
        self.yaml = yaml
        self.problems: list[Diagnostic] = []
        self.budget = _MAX_NODES

    def build(self, node: Node, path: Path, depth: int = 0) -> object:
        self.budget -= 1
        if self.budget < 0:
            if self.budget == -1:
                self._problem(
                    node, f"more than {_MAX_NODES} values (are aliases repeating a tree?)"
                )
            return None
        self.source.values[path] = node
        if depth > _MAX_DEPTH:
            self._problem(node, f"nested deeper than {_MAX_DEPTH} levels")
            return None
        if isinstance(node, MappingNode):
            result: dict[str, object] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._problem(key_node, "merge keys (<<) are not supported in playbooks")
                    continue
                key = self._scalar(key_node)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self._problem(key_node, "mapping keys must be plain strings")
                    continue
                key = str(key)
                if key in result:
                    self._problem(key_node, f"duplicate key {key!r}")
                    continue
                self.source.keys[(*path, key)] = key_node
                result[key] = self.build(value_node, (*path, key), depth + 1)
            return result
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: Node) -> object:
        if not isinstance(node, ScalarNode):
            self._problem(node, "expected a plain value here")
            return None
        if node.tag == _TIMESTAMP_TAG:
            return str(node.value)  # keep dates as written; expressions parse them when needed
        try:
            return self.yaml.constructor.construct_object(node, deep=True)
        except YAMLError as exc:
            self._problem(node, f"yaml: {exc}")
            return None

    def _problem(self, node: Node, message: str) -> None:
        pos = _mark(node)
        self.problems.append(Diagnostic(self.source.file, pos.line, pos.col, message, "yaml"))


def _bracket_depth(text: str) -> int:
    """The deepest run of unclosed `[`/`{` (quotes not considered): a cheap guard that spares
    the recursive YAML parser pathological input such as ten thousand `[`."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


def read_source(text: str, *, file: str) -> tuple[Source | None, list[Diagnostic]]:
    """Parse one YAML document; return it with positions, or the problems that stopped it."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        return None, [Diagnostic(file, 1, 1, "file is larger than 1 MiB", "yaml")]
    if _bracket_depth(text) > _MAX_FLOW_BRACKETS:
        return None, [
            Diagnostic(file, 1, 1, f"yaml: nested deeper than {_MAX_DEPTH} levels", "yaml")
        ]
    yaml = YAML(typ="safe", pure=True)
    try:
        documents = list(yaml.compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [Diagnostic(file, line, col, f"yaml: {problem}", "yaml")]
    except RecursionError:
        return None, [
            Diagnostic(file, 1, 1, f"yaml: nested deeper than {_MAX_DEPTH} levels", "yaml")
        ]
    except YAMLError as exc:
        return None, [Diagnostic(file, 1, 1, f"yaml: {exc}", "yaml")]
    documents = [d for d in documents if d is not None]
    if len(documents) != 1:
        what = "is empty" if not documents else "holds more than one document"
        return None, [Diagnostic(file, 1, 1, f"the file {what}: one playbook per file", "yaml")]
    source = Source(file=file, text=text, data=None)
    builder = _Builder(source, yaml)
    source.data = builder.build(documents[0], ())
    if builder.problems:
        return None, builder.problems
    return source, []
