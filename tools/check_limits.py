"""`make lint`: no product module above 400 lines, no function above complexity 15.

Complexity is radon's cyclomatic complexity (boolean operators count too),
stricter than ruff's C901, which `make lint` also runs at 15. Migrations,
tests and benchmarks are not product code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("keys", "federation", "attester")
MAX_LINES = 400
MAX_COMPLEXITY = 15


def product_modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    )


def functions(blocks: list[Function | Class]) -> list[Function]:
    """Every function and method, closures included."""
    found: list[Function] = []
    for block in blocks:
        if isinstance(block, Class):
            found += functions(block.methods + block.inner_classes)
        else:
            found += [block, *functions(block.closures)]
    return found


def main() -> int:
    problems = []
    for path in product_modules():
        text = path.read_text()
        name = path.relative_to(ROOT)
        lines = text.count("\n")
        if lines > MAX_LINES:
            problems.append(f"{name}: {lines} lines (at most {MAX_LINES})")
        seen = {(b.lineno, b.name): b for b in functions(cc_visit(text))}
        for block in seen.values():
            if block.complexity > MAX_COMPLEXITY:
                problems.append(
                    f"{name}:{block.lineno} {block.name}: "
                    f"complexity {block.complexity} (at most {MAX_COMPLEXITY})"
                )
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
