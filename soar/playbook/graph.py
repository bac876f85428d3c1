"""The shape of a playbook's steps: which step runs before which, cycles, and dead steps.

Within one list of steps, a step without `needs` runs after the step above it; a step with
`needs` runs as soon as the steps it names have finished (`needs: []`: at once). Steps inside a
branch, a parallel group or a fallback run inside their container.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from soar.playbook.schema import Playbook, Step
from soar.playbook.source import Path


class Region(StrEnum):
    """Where a step sits: the main flow, a fallback, or an escalation rung."""

    MAIN = "main"
    ON_ERROR = "on_error"
    ESCALATE = "escalate"


@dataclass(slots=True)
class StepNode:
    """One step with its place in the file and in the flow."""

    key: str
    path: Path
    step: Step
    region: Region
    list_path: Path
    container: StepNode | None
    deps: list[str] = field(default_factory=list)
    in_for_each: bool = False
    named: bool = True

    @property
    def label(self) -> str:
        return self.key if self.named else "step at " + ".".join(str(p) for p in self.path)


@dataclass(slots=True)
class StepGraph:
    """Every step of a playbook by key, and the lists they sit in."""

    nodes: dict[str, StepNode] = field(default_factory=dict)
    lists: dict[Path, list[str]] = field(default_factory=dict)
    duplicates: list[tuple[Path, str]] = field(default_factory=list)
    _children: dict[str, list[StepNode]] = field(default_factory=dict)
    _before: dict[str, frozenset[str]] = field(default_factory=dict)
    _descendants: dict[str, frozenset[str]] = field(default_factory=dict)

    def before(self, node: StepNode) -> frozenset[str]:
        """Keys of the steps that have finished (or were skipped) whenever `node` starts."""
        for pending in self._uncomputed(node):
            self._before[pending.key] = self._compute_before(pending)
        return self._before[node.key]

    def _prerequisites(self, node: StepNode) -> list[StepNode]:
        found = [self.nodes[key] for key in node.deps if key in self.nodes]
        return found + ([node.container] if node.container is not None else [])

    def _uncomputed(self, node: StepNode) -> list[StepNode]:
        """Nodes whose `before` is still unknown, prerequisites first (iterative: long chains
        of steps must not exhaust Python's recursion limit)."""
        order: list[StepNode] = []
        seen: set[str] = set()
        stack: list[tuple[StepNode, bool]] = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if expanded:
                order.append(current)
                continue
            if current.key in seen or current.key in self._before:
                continue
            seen.add(current.key)  # a `needs` cycle stops here; cycles are reported apart
            stack.append((current, True))
            stack.extend((p, False) for p in self._prerequisites(current))
        return order

    def _compute_before(self, node: StepNode) -> frozenset[str]:
        result: set[str] = set()
        for key in node.deps:
            dep = self.nodes.get(key)
            if dep is not None:
                result.add(key)
                result |= self._before.get(key, frozenset())
                result |= self.descendants(dep)
        if node.container is not None:
            if node.list_path[-1] == "on_error":
                result.add(node.container.key)  # a fallback sees the step that failed
            result |= self._before.get(node.container.key, frozenset())
        return frozenset(result)

    def descendants(self, node: StepNode) -> frozenset[str]:
        """Keys of the steps nested inside `node` (branch cases, parallel members)."""
        known = self._descendants.get(node.key)
        if known is not None:
            return known
        result: set[str] = set()
        for child in self._children.get(node.key, []):
            if child.region is node.region:
                result.add(child.key)
                result |= self.descendants(child)
        frozen = frozenset(result)
        self._descendants[node.key] = frozen
        return frozen

    def cycles(self) -> list[list[str]]:
        """Every `needs` cycle, each as the keys along it, first key repeated at the end."""
        found: list[list[str]] = []
        seen: set[frozenset[str]] = set()
        for keys in self.lists.values():
            members = set(keys)
            for start in keys:
                cycle = _find_cycle(start, self.nodes, members)
                if cycle and frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append([*cycle, cycle[0]])
        return found


def _find_cycle(start: str, nodes: dict[str, StepNode], members: set[str]) -> list[str] | None:
    path: list[str] = []
    on_path: set[str] = set()

    def visit(key: str) -> list[str] | None:
        if key in on_path:
            return path[path.index(key) :]
        if key not in members:
            return None
        path.append(key)
        on_path.add(key)
        for dep in nodes[key].deps:
            cycle = visit(dep)
            if cycle:
                return cycle
        path.pop()
        on_path.discard(key)
        return None

    cycle = visit(start)
    if cycle and cycle[0] == start:
        return cycle
    return None


def build_graph(playbook: Playbook) -> StepGraph:
    """Index every step, main flow, fallbacks and escalations, with its dependencies."""
    graph = StepGraph()
    _add_list(graph, playbook.steps, ("steps",), None, Region.MAIN, sequential=True)
    for i, rung in enumerate(playbook.escalate):
        _add_list(graph, rung.steps, ("escalate", i, "steps"), None, Region.ESCALATE, True)
    return graph


def _add_list(
    graph: StepGraph,
    steps: list[Step],
    list_path: Path,
    container: StepNode | None,
    region: Region,
    sequential: bool,
) -> None:
    keys: list[str] = []
    for i, step in enumerate(steps):
        path = (*list_path, i)
        named = step.id is not None
        key = step.id if step.id is not None else "#" + "/".join(str(p) for p in path)
        if key in graph.nodes:
            graph.duplicates.append((path, key))
            key = "#" + "/".join(str(p) for p in path)
        node = StepNode(
            key=key,
            path=path,
            step=step,
            region=region,
            list_path=list_path,
            container=container,
            in_for_each=step.for_each is not None,
            named=named,
        )
        if step.needs is not None:
            node.deps = list(step.needs)
        elif sequential and keys:
            node.deps = [keys[-1]]
        graph.nodes[key] = node
        if container is not None:
            graph._children.setdefault(container.key, []).append(node)
        keys.append(key)
        _add_children(graph, node, region)
    graph.lists[list_path] = keys


def _add_children(graph: StepGraph, node: StepNode, region: Region) -> None:
    step = node.step
    for c, case in enumerate(step.branch or []):
        if case.steps is not None:
            _add_list(graph, case.steps, (*node.path, "branch", c, "steps"), node, region, True)
        if case.else_ is not None:
            _add_list(graph, case.else_, (*node.path, "branch", c, "else"), node, region, True)
    if step.parallel is not None:
        _add_list(graph, step.parallel, (*node.path, "parallel"), node, region, False)
    if step.on_error is not None:
        _add_list(graph, step.on_error, (*node.path, "on_error"), node, Region.ON_ERROR, True)
