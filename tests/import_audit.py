"""Imports written inside functions (an AST walk over hoikit/): the ones between hoikit modules,
which usually hide an import loop from the layer contract's reader, and the ones of third-party
packages, which should be optional or heavy dependencies marked with a comment.

    python tests/import_audit.py            # list every function-local hoikit-internal import + count
    python tests/import_audit.py --all      # also the third-party ones

tests/test_import_layers.py uses :func:`local_imports` to keep the hoikit-internal ones from growing.
(import-linter sees these imports too: grimp parses every import statement of a module, at any
depth, so a local import hides nothing from ``lint-imports``; it only defers the import at run time.)
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "hoikit"


@dataclass(frozen=True)
class LocalImport:
    """One import statement inside a function body.

    Attributes:
        importer: dotted module holding the statement (``hoikit.engine.trainer``).
        target: dotted module imported (relative imports resolved; ``from pkg import x`` gives the
            submodule ``pkg.x`` when it is a module of the package, else ``pkg``).
        line: 1-based line number; text: the statement's first line, stripped.
    """

    importer: str
    target: str
    line: int
    text: str

    @property
    def internal(self) -> bool:
        return self.target == "hoikit" or self.target.startswith("hoikit.")

    def __str__(self) -> str:
        return f"{self.importer}:{self.line}: {self.text}"


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(dotted: str, package_dir: Path) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = package_dir / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _targets(node: ast.AST, importer: str, is_package: bool, package_dir: Path) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        module = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    for alias in node.names:            # from pkg import x: x is a submodule or a name defined in pkg
        sub = f"{module}.{alias.name}"
        yield sub if module.split(".")[0] == package_dir.name and _is_module(sub, package_dir) else module


def _function_imports(tree: ast.AST) -> Iterator[ast.AST]:
    """Import statements at any depth inside a (async) function, lambdas have none."""
    def walk(node: ast.AST, in_function: bool) -> Iterator[ast.AST]:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(tree, False)


def local_imports(package_dir: Path = PACKAGE_DIR) -> List[LocalImport]:
    """Every import statement inside a function of ``package_dir`` (one entry per imported module)."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        importer = _module_name(path, package_dir)
        for node in _function_imports(ast.parse(source, filename=str(path))):
            targets = _targets(node, importer, path.name == "__init__.py", package_dir)
            for target in dict.fromkeys(targets):           # one entry per module a statement imports
                found.append(LocalImport(importer, target, node.lineno, lines[node.lineno - 1].strip()))
    return found


def main(argv: List[str]) -> int:
    found = local_imports()
    internal = [f for f in found if f.internal]
    for f in internal:
        print(f)
    print(f"{len(internal)} function-local imports between hoikit modules "
          f"({len({(f.importer, f.target) for f in internal})} distinct importer -> target pairs, "
          f"in {len({f.importer for f in internal})} modules)")
    if "--all" in argv:
        external = [f for f in found if not f.internal]
        print()
        for f in external:
            print(f)
        marked = sum("dependency" in f.text for f in external)
        print(f"{len(external)} function-local third-party imports ({marked} marked '... dependency')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
