"""YAML documents from users (thresholds.yaml, the data manifest), loaded safely and within bounds.

`yaml.safe_load` constructs no objects that run code, but it still takes the last of two equal keys without a word,
expands an alias bomb (a few hundred bytes that stand for billions of nodes) into whatever reads the result, and
overflows Python's stack on deeply nested brackets. Here a duplicate key is an error naming both lines, and a
document deeper than MAX_DEPTH or standing for more than MAX_NODES nodes (aliases counted as what they repeat) is
refused before anything is constructed. Errors are cut to a bounded length.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pytest_emogate.files import usage_error
from pytest_emogate.formats import cut

MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_ERROR_CHARS = 600
BOOL_TAG = "tag:yaml.org,2002:bool"
FLOAT_TAG = "tag:yaml.org,2002:float"
MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """What is wrong with a document, already phrased for the user (line numbers included)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and counts nesting depth while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlProblem(f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                shown = cut(repr(key), MAX_ERROR_CHARS)
                raise YamlProblem(f"line {line}: duplicate key {shown} (first on line {seen[key]}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _Yaml12Loader(_BoundedLoader):
    """YAML 1.2 core-schema booleans and floats: `on`, `yes`, `no` stay strings (so `{floor: 0.4, on:
    lower_bound}` works), and `1e-2` is a float as YAML 1.2 reads it (PyYAML's 1.1 rule wants a dot)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (BOOL_TAG, FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def load_yaml(text: str, what: str, path: Path, *, yaml12_booleans: bool = False) -> Any:
    """The document in `text` (read from `path`, named `what` in errors); one UsageError for any problem."""
    loader = (_Yaml12Loader if yaml12_booleans else _BoundedLoader)(text)
    loader.name = str(path)  # PyYAML's marks otherwise say "<unicode string>"
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except YamlProblem as problem:
        raise usage_error(f"{what} {path}", [str(problem)]) from None
    except yaml.YAMLError as error:
        raise usage_error(
            f"{what} {path}", [f"not valid YAML: {cut(' '.join(str(error).split()), MAX_ERROR_CHARS)}"]
        ) from None
    except RecursionError:
        raise usage_error(f"{what} {path}", [f"nested too deeply (more than {MAX_DEPTH} levels)"]) from None
    finally:
        loader.dispose()


def _check_size(root: Node) -> None:
    """Refuse a document whose nodes, each alias counted as the nodes it repeats, exceed MAX_NODES."""
    sizes: dict[int, int] = {}
    # Post-order walk without recursion; an alias is the same node object met again, so its size is reused.
    stack: list[tuple[Node, bool]] = [(root, False)]
    pending: set[int] = set()
    repeated = False
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            repeated = True
            continue
        children = _children(node)
        if not done:
            if id(node) in pending:
                raise YamlProblem(f"line {node.start_mark.line + 1}: an alias refers to a node that contains it")
            pending.add(id(node))
            stack.append((node, True))
            repeated |= any(id(child) in sizes for child in children)
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        pending.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        if sizes[id(node)] > MAX_NODES:
            cause = "; its aliases repeat nodes: an alias bomb?" if repeated else "; a gate file needs far fewer"
            raise YamlProblem(
                f"line {node.start_mark.line + 1}: the document holds more than {MAX_NODES:,} values (each alias "
                f"counted as the values it repeats){cause}"
            )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []
