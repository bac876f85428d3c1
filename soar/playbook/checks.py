"""The semantic checks of one playbook: structure, expressions, references, actions, the graph."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import JsonValue

from soar.connectors.action import ActionSignature
from soar.connectors.registry import Registry
from soar.errors import Diagnostic, ExpressionError
from soar.models import Alert
from soar.playbook.datapaths import find_problem, render_path, suggest
from soar.playbook.expr import Expression, Reference, Template, compile_expression, compile_template
from soar.playbook.graph import Region, StepGraph, StepNode, build_graph
from soar.playbook.outputs import STEP_FIELDS, ApprovalOutcome, WaitOutcome
from soar.playbook.schema import Playbook, Step
from soar.playbook.source import Path, Source

_FLOW_ROOTS = frozenset({"alert", "alerts", "steps", "run", "inputs", "playbook", "directory"})
_ALERT_SCHEMA = Alert.model_json_schema()
_OUTCOME_SCHEMAS = {
    "approval": ApprovalOutcome.model_json_schema(),
    "wait": WaitOutcome.model_json_schema(),
}


@dataclass(frozen=True, slots=True)
class _Place:
    """Where an expression sits: which names it may use and which steps it may read."""

    roots: frozenset[str]
    node: StepNode | None = None
    all_steps: bool = False
    self_visible: bool = False
    item: bool = False

    def allows(self, root: str) -> bool:
        return root in self.roots or (self.item and root in ("item", "index"))


class Checker:
    """Runs every check on a schema-valid playbook and collects the diagnostics."""

    def __init__(
        self,
        source: Source,
        playbook: Playbook,
        registry: Registry,
        *,
        removed: set[Path],
        known: Mapping[str, Playbook] | None,
    ) -> None:
        self.source = source
        self.playbook = playbook
        self.registry = registry
        self.removed = removed
        self.known = known
        self.graph: StepGraph = build_graph(playbook)
        self.diagnostics: list[Diagnostic] = []
        self.expressions: dict[Path, Expression] = {}
        self.templates: dict[Path, Template] = {}

    def run(self) -> None:
        self._check_trigger()
        for path, key in self.graph.duplicates:
            self._at((*path, "id"), f"step id {key!r} is used more than once")
        for node in self.graph.nodes.values():
            self._check_step(node)
        for i, rung in enumerate(self.playbook.escalate):
            if rung.unless is not None:
                self._expression(
                    ("escalate", i, "unless"), rung.unless, _Place(_FLOW_ROOTS, all_steps=True)
                )
        self._check_cycles()
        self._check_reachability()

    # -- helpers -------------------------------------------------------------------------

    def _at(self, path: Path, message: str, *, key: bool = False) -> None:
        if any(path[: len(r)] == r for r in self.removed):
            return
        self.diagnostics.append(self.source.diagnostic(path, message, key=key))

    def _repaired(self, path: Path) -> bool:
        """Whether a schema error already removed something under `path` (no follow-on errors)."""
        return any(r[: len(path)] == path for r in self.removed)

    def _at_offset(self, path: Path, offset: int, message: str) -> None:
        pos = self.source.offset_position(path, offset)
        self.diagnostics.append(Diagnostic(self.source.file, pos.line, pos.col, message))

    def _expression(self, path: Path, text: str, place: _Place) -> Expression | None:
        try:
            compiled = compile_expression(text)
        except ExpressionError as exc:
            self._at_offset(path, exc.offset, f"expression: {exc.message}")
            return None
        self.expressions[path] = compiled
        self._check_refs(path, compiled.refs, place)
        return compiled

    def _template(self, path: Path, text: str, place: _Place) -> Template | None:
        try:
            compiled = compile_template(text)
        except ExpressionError as exc:
            self._at_offset(path, exc.offset, f"template: {exc.message}")
            return None
        if not compiled.is_constant:
            self.templates[path] = compiled
            self._check_refs(path, compiled.refs, place)
        return compiled

    def _templates_in(self, path: Path, value: JsonValue, place: _Place) -> None:
        if isinstance(value, str):
            self._template(path, value, place)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._templates_in((*path, key), item, place)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._templates_in((*path, i), item, place)

    # -- trigger -------------------------------------------------------------------------

    def _check_trigger(self) -> None:
        trigger = self.playbook.trigger
        base: Path = ("trigger",)
        kinds = [trigger.match, trigger.cron, trigger.webhook, trigger.event]
        if all(k is None for k in kinds) and not trigger.manual:
            self._at(base, "the trigger needs at least one of match, cron, webhook, event, manual")
        if trigger.match is not None:
            roots = frozenset({"alert", "event"} if trigger.event else {"alert"})
            self._expression((*base, "match"), trigger.match, _Place(roots))
        if trigger.cron is not None and not croniter.is_valid(trigger.cron):
            self._at(
                (*base, "cron"),
                f"bad cron schedule {trigger.cron!r} (five fields: m h dom mon dow)",
            )
        try:
            ZoneInfo(trigger.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self._at(
                (*base, "timezone"),
                f"unknown time zone {trigger.timezone!r} (use an IANA name such as Europe/Paris)",
            )
        if trigger.dedup is not None:
            if trigger.match is None:
                self._at((*base, "dedup"), "dedup needs an alert trigger (match)", key=True)
            self._template((*base, "dedup", "key"), trigger.dedup.key, _Place(frozenset({"alert"})))

    # -- steps ---------------------------------------------------------------------------

    def _check_step(self, node: StepNode) -> None:
        step, path = node.step, node.path
        kinds = step.kinds
        if not kinds:
            self._at(
                path,
                f"step {node.label!r} does nothing: give it one of action, approval, "
                "playbook, branch, parallel, wait, end",
            )
        for extra in kinds[1:]:
            self._at(
                (*path, extra),
                f"a step does one thing: {kinds[0]!r} and {extra!r} cannot be combined "
                "(use two steps)",
                key=True,
            )
        if node.region is Region.MAIN and not node.named:
            self._at(path, "every step of the main flow needs an id")
        self._check_applicability(node)
        place = self._place(node)
        if isinstance(step.when, str):
            self._expression((*path, "when"), step.when, _Place(place.roots, node=node))
        if isinstance(step.for_each, str):
            compiled = self._template(
                (*path, "for_each"), step.for_each, _Place(place.roots, node=node)
            )
            if compiled is not None and not compiled.is_native:
                self._at(
                    (*path, "for_each"),
                    'for_each takes one expression giving a list, e.g. "{{ alert.hosts }}"',
                )
        self._templates_in((*path, "with"), step.with_, place)
        if step.action is not None:
            self._check_action(
                path, step.action, step.with_, has_with=(*path, "with") in self.source.keys
            )
        if step.playbook is not None:
            self._check_subplaybook(path, step.playbook, step.with_)
        if step.compensate is not None:
            comp_path = (*path, "compensate")
            comp_place = _Place(place.roots, node=node, self_visible=True, item=place.item)
            self._templates_in((*comp_path, "with"), step.compensate.with_, comp_place)
            self._check_action(
                comp_path,
                step.compensate.action,
                step.compensate.with_,
                has_with=(*comp_path, "with") in self.source.keys,
            )
        if step.approval is not None:
            approval = step.approval
            if approval.group is None and not approval.approvers:
                self._at((*path, "approval"), "an approval needs a group or a list of approvers")
            if approval.message is not None:
                self._template((*path, "approval", "message"), approval.message, place)
        if step.wait is not None:
            self._check_wait(node, place)
        for c, _case in enumerate(step.branch or []):
            self._check_case(node, c, len(step.branch or []), place)
        if step.needs is not None:
            self._check_needs(node)

    def _check_applicability(self, node: StepNode) -> None:
        step, path = node.step, node.path
        runs_something = step.action is not None or step.playbook is not None
        rules = [
            (
                "with",
                bool(step.with_) and not runs_something,
                "'with' gives inputs to an action or a sub-playbook",
            ),
            (
                "for_each",
                step.for_each is not None and not runs_something,
                "for_each repeats an action or a sub-playbook",
            ),
            (
                "concurrency",
                step.concurrency is not None and step.for_each is None,
                "concurrency limits a for_each; this step has none",
            ),
            (
                "retry",
                step.retry is not None and step.action is None,
                "retry applies to an action (a sub-playbook's steps have their own retries)",
            ),
            (
                "compensate",
                step.compensate is not None and step.action is None,
                "compensate undoes an action; this step runs none",
            ),
            (
                "on_error",
                step.on_error is not None and not runs_something,
                "on_error catches a failed action or sub-playbook",
            ),
            (
                "timeout",
                step.timeout is not None and (step.approval is not None or step.wait is not None),
                "put the timeout inside the approval or wait",
            ),
            (
                "timeout",
                step.timeout is not None and step.playbook is not None,
                "a sub-playbook runs to its own end: put timeouts on its steps",
            ),
        ]
        for key, broken, message in rules:
            if broken:
                self._at((*path, key), message, key=True)

    def _place(self, node: StepNode) -> _Place:
        event = self.playbook.trigger.event is not None  # the event that started the run
        return _Place(
            _FLOW_ROOTS | {"event"} if event else _FLOW_ROOTS,
            node=node,
            all_steps=node.region is Region.ESCALATE,
            item=node.in_for_each,
        )

    def _check_wait(self, node: StepNode, place: _Place) -> None:
        wait, path = node.step.wait, (*node.path, "wait")
        assert wait is not None  # noqa: S101
        chosen = [k for k in ("match", "duration", "until") if getattr(wait, k) is not None]
        if len(chosen) != 1 and not self._repaired(path):
            self._at(
                path, "a wait takes exactly one of match (a later alert or event), duration, until"
            )
        if wait.match is not None:
            self._expression(
                (*path, "match"), wait.match, _Place(place.roots | {"event"}, node=node)
            )
            if wait.timeout is None:
                self._at(path, "a wait for an alert or event needs a timeout: no run waits forever")
        if wait.until is not None:
            self._template((*path, "until"), wait.until, place)

    def _check_case(self, node: StepNode, c: int, count: int, place: _Place) -> None:
        case = (node.step.branch or [])[c]
        path = (*node.path, "branch", c)
        if case.else_ is not None:
            if case.when is not None or case.steps is not None:
                self._at(path, "a branch case is either when + steps, or else")
            if c != count - 1:
                self._at((*path, "else"), "else must be the last case of a branch", key=True)
            return
        if case.when is None:
            self._at(path, "a branch case needs a when (or use else for the default)")
        elif isinstance(case.when, str):
            self._expression((*path, "when"), case.when, _Place(place.roots, node=node))
        if case.steps is None:
            self._at(path, "a branch case needs steps")

    def _check_needs(self, node: StepNode) -> None:
        siblings = set(self.graph.lists.get(node.list_path, []))
        for i, need in enumerate(node.step.needs or []):
            if need in siblings:
                continue
            if need in self.graph.nodes:
                message = f"needs can only name a step of the same list; {need!r} is elsewhere"
            else:
                message = f"needs an unknown step {need!r}" + suggest(need, sorted(siblings))
            self._at((*node.path, "needs", i), message)

    # -- actions and sub-playbooks -----------------------------------------------------------

    def _check_action(
        self, path: Path, name: str, inputs: Mapping[str, JsonValue], *, has_with: bool
    ) -> None:
        signature = self.registry.signature(name)
        if signature is None:
            connector = name.partition(".")[0]
            known = self.registry.connector_names()
            if connector not in known:
                message = (
                    f"unknown action {name!r}: no connector {connector!r} is installed "
                    f"(installed: {', '.join(known) or 'none'}; or pass --catalog)"
                )
            else:
                message = f"unknown action {name!r}" + suggest(name, self.registry.action_names())
            self._at((*path, "action"), message)
            return
        self._check_inputs(path, signature, inputs, has_with=has_with)

    def _check_inputs(
        self,
        path: Path,
        signature: ActionSignature,
        inputs: Mapping[str, JsonValue],
        *,
        has_with: bool,
    ) -> None:
        name = signature.qualified_name
        known = signature.input_names()
        for key in inputs:
            if key not in known:
                hint = suggest(key, sorted(known))
                self._at((*path, "with", key), f"{name} has no input {key!r}{hint}", key=True)
        for required in signature.required_inputs():
            if required not in inputs:
                where = (*path, "with") if has_with else (*path, "action")
                self._at(where, f"{name}: missing required input {required!r}", key=True)
        constants = {k: v for k, v in inputs.items() if k in known and not _has_template(v)}
        for loc, message in signature.input_problems(constants):
            self._at((*path, "with", *loc), f"{name}: input {render_path(list(loc))!r}: {message}")

    def _check_subplaybook(self, path: Path, target: str, inputs: Mapping[str, JsonValue]) -> None:
        if self.known is None:
            return
        other = self.known.get(target)
        if other is None:
            hint = suggest(target, sorted(self.known)) or " (validate it together with this one)"
            self._at((*path, "playbook"), f"unknown playbook {target!r}{hint}")
            return
        chain = _call_chain(self.known, target, self.playbook.id, [self.playbook.id, target])
        if chain is not None:
            self._at((*path, "playbook"), "sub-playbook cycle: " + " → ".join(chain))
        for key in inputs:
            if key not in other.inputs:
                self._at(
                    (*path, "with", key),
                    f"playbook {target!r} has no input {key!r}"
                    + suggest(key, sorted(other.inputs)),
                    key=True,
                )
        for key, spec in other.inputs.items():
            if spec.required and spec.default is None and key not in inputs:
                self._at(
                    (*path, "playbook"), f"playbook {target!r}: missing required input {key!r}"
                )

    # -- references ----------------------------------------------------------------------

    def _check_refs(self, path: Path, refs: tuple[Reference, ...], place: _Place) -> None:
        for ref in refs:
            problem = self._ref_problem(ref, place)
            if problem is not None:
                self._at_offset(path, ref.offset, problem)

    def _ref_problem(self, ref: Reference, place: _Place) -> str | None:
        root = ref.path[0]
        if not isinstance(root, str):
            return None
        if not place.allows(root):
            if root in ("item", "index"):
                return f"{root!r} is only defined in a step with for_each"
            if root == "event":
                return (
                    "'event' is only defined in a wait's match and in playbooks started by an "
                    "event (trigger.event)"
                )
            allowed = ", ".join(sorted(place.roots | ({"item", "index"} if place.item else set())))
            return f"{root!r} cannot be used here (available: {allowed})"
        rest = list(ref.path[1:])
        if root == "alert":
            return find_problem(_ALERT_SCHEMA, rest, "alert")
        if root == "alerts" and rest:
            if isinstance(rest[0], str):
                return "alerts is the list of alerts attached to the run: index it with a number"
            return find_problem(_ALERT_SCHEMA, rest[1:], "alert")
        if (
            root == "inputs"
            and rest
            and isinstance(rest[0], str)
            and rest[0] not in self.playbook.inputs
        ):
            return f"unknown input {rest[0]!r}" + suggest(rest[0], sorted(self.playbook.inputs))
        if root == "steps" and rest:
            return self._step_ref_problem(ref, rest, place)
        return None

    def _step_ref_problem(
        self, ref: Reference, rest: list[str | int | None], place: _Place
    ) -> str | None:
        target_key = rest[0]
        if not isinstance(target_key, str):
            return None
        text = render_path(list(ref.path))
        target = self.graph.nodes.get(target_key)
        if target is None or not target.named:
            names = [k for k, n in self.graph.nodes.items() if n.named]
            return f"unknown step {target_key!r} in {text}" + suggest(target_key, names)
        if place.node is not None and not place.all_steps:
            visible = self.graph.before(place.node)
            if target_key not in visible and not (place.self_visible and target is place.node):
                return (
                    f"step {target_key!r} does not run before this step, so {text} is not known yet"
                )
        if len(rest) < 2 or rest[1] is None:
            return None
        attribute = rest[1]
        if not isinstance(attribute, str) or attribute not in STEP_FIELDS:
            return f"{render_path(['steps', target_key])} has no field {attribute!r}" + suggest(
                str(attribute), STEP_FIELDS
            )
        if attribute != "output" or len(rest) < 3:
            return None
        return self._output_problem(target, rest[2:])

    def _output_problem(self, target: StepNode, parts: list[str | int | None]) -> str | None:
        step = target.step
        if step.for_each is not None:
            if isinstance(parts[0], str):
                return (
                    f"steps.{target.key}.output is a list (one output per for_each item): "
                    "index it with a number"
                )
            parts = parts[1:]
        if step.action is not None:
            signature = self.registry.signature(step.action)
            if signature is None:
                return None
            return find_problem(signature.output_schema, parts, f"{step.action} output")
        for kind, schema in _OUTCOME_SCHEMAS.items():
            if getattr(step, kind) is not None:
                return find_problem(schema, parts, f"{kind} output")
        return None

    # -- graph -----------------------------------------------------------------------------

    def _check_cycles(self) -> None:
        for cycle in self.graph.cycles():
            first = self.graph.nodes[cycle[0]]
            index = (
                (first.step.needs or []).index(cycle[1])
                if cycle[1] in (first.step.needs or [])
                else 0
            )
            self._at((*first.path, "needs", index), "needs cycle: " + " → ".join(cycle))

    def _check_reachability(self) -> None:
        enders = {key for key, node in self.graph.nodes.items() if _always_ends(node.step)}
        dead: set[str] = set()
        for key, node in self.graph.nodes.items():
            if _depends_on(self.graph, node, enders, set()):
                dead.add(key)
                self._at(
                    node.path,
                    f"step {node.label!r} can never run: a step before it always ends the run",
                )
            elif node.step.when is False or self._constant_false(node):
                dead.add(key)
                self._at(
                    (*node.path, "when"),
                    f"step {node.label!r} can never run: its when is always false",
                )

    def _constant_false(self, node: StepNode) -> bool:
        compiled = self.expressions.get((*node.path, "when"))
        if compiled is None or compiled.refs or compiled.calls:
            return False
        try:
            return not compiled.evaluate({})
        except ExpressionError:
            return False


def _always_ends(step: Step) -> bool:
    if step.when is not None and step.when is not True:
        return False
    if step.end is not None:
        return True
    return step.action == "core.fail" and step.on_error is None


def _call_chain(
    known: Mapping[str, Playbook], current: str, goal: str, chain: list[str]
) -> list[str] | None:
    """The chain of sub-playbook calls from `current` back to `goal`, if there is one."""
    if current == goal:
        return chain
    playbook = known.get(current)
    if playbook is None or len(chain) > len(known) + 1:
        return None
    for step in _all_steps(playbook.steps):
        if step.playbook is not None and step.playbook not in chain[1:]:
            found = _call_chain(known, step.playbook, goal, [*chain, step.playbook])
            if found is not None:
                return found
    return None


def _all_steps(steps: list[Step]) -> list[Step]:
    found: list[Step] = []
    for step in steps:
        found.append(step)
        for case in step.branch or []:
            found.extend(_all_steps(case.steps or []))
            found.extend(_all_steps(case.else_ or []))
        found.extend(_all_steps(step.parallel or []))
        found.extend(_all_steps(step.on_error or []))
    return found


def _depends_on(graph: StepGraph, node: StepNode, targets: set[str], seen: set[str]) -> bool:
    for dep in node.deps:
        if dep in seen:
            continue
        seen.add(dep)
        if dep in targets:
            return True
        other = graph.nodes.get(dep)
        if other is not None and _depends_on(graph, other, targets, seen):
            return True
    return False


def _has_template(value: JsonValue) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False
