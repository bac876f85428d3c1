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

    def before(self, node: StepNode) -> set[str]:
        """Keys of the steps that have finished (or were skipped) whenever `node` starts."""
        result: set[str] = set()
        self._collect_before(node, result)
        return result

    def _collect_before(self, node: StepNode, result: set[str]) -> None:
        stack = list(node.deps)
        while stack:
            key = stack.pop()
            if key in result or key not in self.nodes:
                continue
            result.add(key)
            dep = self.nodes[key]
            stack.extend(dep.deps)
            result.update(self.descendants(dep))
        if node.container is not None:
            if node.list_path[-1] == "on_error":
                result.add(node.container.key)  # a fallback sees the step that failed
            self._collect_before(node.container, result)

    def descendants(self, node: StepNode) -> set[str]:
        """Keys of the steps nested inside `node` (branch cases, parallel members)."""
        return {
            key
            for key, other in self.nodes.items()
            if other.region is node.region and _inside(other, node)
        }

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


def _inside(node: StepNode, container: StepNode) -> bool:
    probe = node.container
    while probe is not None:
        if probe is container:
            return True
        probe = probe.container
    return False


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
