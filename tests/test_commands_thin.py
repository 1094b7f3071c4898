"""Commands are thin and the library does not talk to the terminal (issue 10): argument parsing,
printing and ``__main__`` blocks live in ``hoikit/commands/`` and ``hoikit/cli.py`` only, and no
library module or benchmark imports a function from ``hoikit.commands``."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hoikit

PACKAGE = Path(hoikit.__file__).resolve().parent
ROOT = PACKAGE.parent
# library files still allowed to print (none since run_test hands its report to a callback)
PENDING: set = set()


def terminal_uses(source: str) -> list:
    """``(line, what)`` for every ``print(...)``, argument parser (``argparse.ArgumentParser``, ``from argparse
    import ArgumentParser``) and ``if __name__ == "__main__"``. ``argparse.Namespace`` is data, not parsing:
    official checkpoints store their arguments as one, so the checkpoint reader allows that class."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append((node.lineno, "print"))
        elif (isinstance(node, ast.Attribute) and node.attr == "ArgumentParser" and isinstance(node.value, ast.Name)
              and node.value.id == "argparse"):
            found.append((node.lineno, "argparse.ArgumentParser"))
        elif isinstance(node, ast.ImportFrom) and node.module == "argparse" and any(
                a.name == "ArgumentParser" for a in node.names):
            found.append((node.lineno, "from argparse import ArgumentParser"))
        elif (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
              and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            found.append((node.lineno, "__main__ block"))
    return sorted(found)


def commands_imports(source: str) -> list:
    """``(line, module)`` for every import from ``hoikit.commands`` (absolute or relative)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = [a.name for a in node.names]
            if mod.startswith("hoikit.commands") or (node.level and (mod.startswith("commands")
                                                                    or (not mod and "commands" in names))):
                found.append((node.lineno, mod or names))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("hoikit.commands")]
    return sorted(found)


def library_files():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "cli.py" or rel.startswith("commands/"):
            continue
        yield rel, path


def test_the_checks_see_what_they_look_for():
    src = ('import argparse\nfrom argparse import ArgumentParser\nprint("x")\n'
           'if __name__ == "__main__":\n    p = argparse.ArgumentParser()\nfrom hoikit.commands.train import train\n'
           'from ..commands import demo\nfrom .commands.eval import run\n')
    assert [w for _, w in terminal_uses(src)] == ["from argparse import ArgumentParser", "print", "__main__ block",
                                                  "argparse.ArgumentParser"]
    assert len(commands_imports(src)) == 3
    assert terminal_uses("log = print\nimport argparse\nns = argparse.Namespace(a=1)\n") == []
    assert commands_imports("from ..engine import trainer\nimport hoikit.commanders\n") == []


def test_library_modules_neither_parse_arguments_nor_print():
    bad = [f"hoikit/{rel}:{line}: {what}" for rel, path in library_files() if rel not in PENDING
           for line, what in terminal_uses(path.read_text())]
    assert not bad, "argument parsing / printing belongs in hoikit/commands/:\n" + "\n".join(bad)


def test_nothing_imports_library_code_from_commands():
    files = [(f"hoikit/{rel}", p) for rel, p in library_files()]
    files += [(p.relative_to(ROOT).as_posix(), p) for p in sorted((ROOT / "benchmarks").glob("*.py"))]
    bad = [f"{name}:{line}: {mod}" for name, path in files for line, mod in commands_imports(path.read_text())]
    assert not bad, "move what these import out of hoikit/commands/ into the library:\n" + "\n".join(bad)


def test_the_cli_parser_loads_neither_torch_nor_h5py():
    """`hoikit --help` and `hoikit eval ...` build the whole parser: the evaluators' commands must not pay
    for importing torch (~2 s) or h5py (issue 16: the HICO-DET command on 3M detections in <= 3 s)."""
    code = ("import sys; from hoikit.cli import build_parser; build_parser(); "
            "print(' '.join(m for m in ('torch', 'h5py', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"building the CLI parser imported: {out.stdout.strip()}"
