"""Many playbook files at once: finding them, checking sub-playbook calls across them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from soar.connectors.registry import Registry
from soar.errors import Diagnostic, PlaybookError
from soar.playbook.schema import Playbook
from soar.playbook.validate import LoadedPlaybook, Validation, validate_text

PLAYBOOK_SUFFIXES = (".yaml", ".yml")


def is_playbook_file(path: Path) -> bool:
    """`playbook.yaml` or `<name>.playbook.yaml` (or `.yml`): what a directory walk picks up."""
    name = path.name
    return any(name == f"playbook{s}" or name.endswith(f".playbook{s}") for s in PLAYBOOK_SUFFIXES)


def find_playbook_files(paths: Iterable[Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Files named on the command line are taken as they are; directories are searched."""
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_playbook_file(p))
            if not found:
                problems.append(
                    Diagnostic(
                        str(path),
                        1,
                        1,
                        "no playbook files here (playbook.yaml or *.playbook.yaml)",
                        "io",
                    )
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Diagnostic(str(path), 1, 1, "no such file or directory", "io"))
    unique = list(dict.fromkeys(files))
    return unique, problems


def read_text(path: Path) -> tuple[str | None, Diagnostic | None]:
    """The file as UTF-8 text, or the reason it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, Diagnostic(str(path), 1, 1, f"cannot read: {exc.strerror}", "io")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, Diagnostic(str(path), line, col, "not UTF-8 text", "io")


def validate_files(files: Sequence[Path], *, registry: Registry) -> list[Validation]:
    """Validate files together, so that sub-playbook calls between them are checked."""
    texts: dict[Path, str] = {}
    results: dict[Path, Validation] = {}
    for path in files:
        text, problem = read_text(path)
        if text is None:
            assert problem is not None  # noqa: S101
            results[path] = Validation(file=str(path), diagnostics=[problem])
        else:
            texts[path] = text
    known: dict[str, Playbook] = {}
    owners: dict[str, Path] = {}
    for path, text in texts.items():
        first = validate_text(text, file=str(path), registry=registry)
        if first.playbook is not None:
            if first.playbook.id in known:
                first.diagnostics.append(
                    Diagnostic(
                        str(path),
                        1,
                        1,
                        f"playbook id {first.playbook.id!r} is also used by "
                        f"{owners[first.playbook.id]}",
                    )
                )
                results[path] = first
                continue
            known[first.playbook.id] = first.playbook
            owners[first.playbook.id] = path
    for path, text in texts.items():
        if path not in results:
            results[path] = validate_text(
                text, file=str(path), registry=registry, known_playbooks=known
            )
    return [results[p] for p in files]


def load_playbooks(paths: Iterable[Path], *, registry: Registry) -> list[LoadedPlaybook]:
    """Load every playbook under `paths`; raise `PlaybookError` with every problem if any."""
    files, problems = find_playbook_files(paths)
    results = validate_files(files, registry=registry)
    problems.extend(d for r in results for d in r.diagnostics)
    if problems:
        raise PlaybookError(problems)
    return [r.loaded for r in results if r.loaded is not None]
