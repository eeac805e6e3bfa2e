"""Print the score of the last ``mutmut run`` per module, then every mutant the tests let live.

``mutmut results`` lists the survivors by generated name only, and ``export-cicd-stats`` gives
one total; a survivor is only actionable with its place in the source and its change, so this
reads mutmut's own records (``mutants/<module>.meta``) and shows ``file:line`` and the diff.
Run it from the repository root after ``mutmut run`` (``make mutation`` does both).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

from mutmut.__main__ import (
    get_diff_for_mutant,
    orig_function_and_class_names_from_key,
    status_by_exit_code,
    walk_mutatable_files,
)
from mutmut.configuration import Config
from mutmut.mutation.data import SourceFileMutationData

DETECTED = ("killed", "timeout")
"""The statuses of a mutant the tests noticed."""


def function_span(source: str, function: str, cls: str | None) -> tuple[int, int]:
    """First and last line of ``cls.function`` (or top-level ``function``) in ``source``."""
    scope: list[ast.stmt] = ast.parse(source).body
    if cls is not None:
        scope = next(n.body for n in scope if isinstance(n, ast.ClassDef) and n.name == cls)
    for node in scope:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return node.lineno, node.end_lineno or node.lineno
    return 1, len(source.splitlines())


def mutated_line(path: Path, name: str, diff: str) -> int:
    """The source line of the first line the mutant changes (0 when it cannot be found)."""
    source = path.read_text()
    function, cls = orig_function_and_class_names_from_key(name)
    first, last = function_span(source, function, cls)
    changes = diff.splitlines()[2:]  # after the ---/+++ header
    removed = [d[1:].strip() for d in changes if d.startswith("-") and d[1:].strip()]
    lines = source.splitlines()
    for wanted in removed[:1]:
        for number in range(first, last + 1):
            if lines[number - 1].strip() == wanted:
                return number
    return 0


def main() -> int:
    """Score table, then the mutants not killed; exit status 0 (the score is information)."""
    Config.ensure_loaded()
    rows: list[tuple[str, Counter[str]]] = []
    left: list[tuple[str, str, str]] = []
    for path in sorted(walk_mutatable_files()):
        data = SourceFileMutationData(path=path)
        data.load()
        counts: Counter[str] = Counter()
        for name, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            counts[status] += 1
            if status not in DETECTED:
                diff = get_diff_for_mutant(name, path=path)
                where = f"{path}:{mutated_line(path, name, diff)}"
                change = "  ".join(
                    d[0] + d[1:].strip()
                    for d in diff.splitlines()[2:]
                    if d[:1] in "+-" and d[1:].strip()
                )
                left.append((where, status, f"{name.rpartition('.')[2]}  {change}"))
        rows.append((str(path), counts))

    print(f"{'module':<28} {'killed':>7} {'total':>6} {'score':>7}  not killed")
    total: Counter[str] = Counter()
    for module, counts in rows:
        total.update(counts)
        print(_row(module, counts))
    print(_row("total", total))
    print("killed: the tests failed, or overran their time limit (a hang: 'timeout')")
    print(f"\n{len(left)} mutants not killed:")
    for where, status, what in left:
        print(f"  {where:<30} {status:<10} {what}")
    return 0


def _row(label: str, counts: Counter[str]) -> str:
    """A mutant that makes its tests overrun their time limit (a hang) counts as killed: the
    suite's own per-test timeout would fail the same way."""
    total = sum(counts.values())
    killed = sum(counts[s] for s in DETECTED)
    score = 100 * killed / total if total else 0.0
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "killed")
    return f"{label:<28} {killed:>7} {total:>6} {score:>6.1f}%  {others}"


if __name__ == "__main__":
    sys.exit(main())
