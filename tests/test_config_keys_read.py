"""No configuration key is a silent no-op (issue 12, item 3).

Static audit: every field of the :class:`hoikit.config.Config` dataclass tree must be read somewhere
in the package outside ``hoikit/config.py``, as an attribute (``cfg.model.detr.checkpoint``, a
section alias ``d.checkpoint``) or as a string (``getattr(cfg, "name")``, ``section["name"]``).
What this cannot see: a field whose *name* is read for another section (``dropout`` of one model
read as another's). It catches a key nobody reads under any name, the way ``model.detr.freeze``
was (set by every RmLR preset, read nowhere)."""
import ast
import dataclasses
from pathlib import Path

import pytest

import hoikit
from hoikit.config import Config, load_config
from hoikit.errors import ConfigError

PACKAGE = Path(hoikit.__file__).parent

#: keys known to be unread, each with the open issue that owns it; the list may only shrink
PENDING: dict = {}


def package_reads(root: Path = PACKAGE) -> set:
    """Attribute names loaded (not called: ``det.freeze()`` is a method) and string constants in
    every module of the package except the schema itself."""
    reads = set()
    for f in root.rglob("*.py"):
        if f == root / "config.py":
            continue
        tree = ast.parse(f.read_text(), str(f))
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load) and id(n) not in called:
                reads.add(n.attr)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                reads.add(n.value)
    return reads


def config_keys(cls=Config, prefix: str = ""):
    """Dotted paths of every leaf field of a config dataclass tree."""
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from config_keys(type(default), f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def unread_keys(cls=Config, reads=None) -> list:
    reads = package_reads() if reads is None else reads
    return [k for k in config_keys(cls) if k.rsplit(".", 1)[-1] not in reads]


def test_every_config_key_is_read_by_the_package():
    unread = [k for k in unread_keys() if k not in PENDING]
    assert unread == [], f"config keys read nowhere in hoikit/ (silent no-ops): {unread}"


def test_pending_exceptions_are_still_unread():
    """An exception that got fixed must leave the list (it would otherwise hide a regression)."""
    assert sorted(PENDING) == sorted(k for k in unread_keys() if k in PENDING)


def test_the_audit_sees_an_unread_key():
    @dataclasses.dataclass
    class Section:
        checkpoint: str = ""                 # read by the package
        surely_unread_knob_42: int = 0       # read nowhere

    @dataclasses.dataclass
    class Root:
        section: Section = dataclasses.field(default_factory=Section)

    assert unread_keys(Root) == ["section.surely_unread_knob_42"]


def test_detr_freeze_is_gone_true_in_old_files_is_dropped_false_is_refused(tmp_path):
    from hoikit.config import from_dict, to_dict

    assert not hasattr(Config().model.detr, "freeze")
    f = tmp_path / "old.yaml"
    f.write_text("model:\n  detr:\n    freeze: true\n")            # what every RmLR preset used to say
    load_config(str(f))
    f.write_text("model:\n  detr:\n    freeze: false\n")           # asked for a trainable detector: never honoured
    with pytest.raises(ConfigError, match=r"model.detr.freeze' \(False\) was removed"):
        load_config(str(f))
    with pytest.raises(ConfigError, match="model.detr.freeze"):
        load_config(None, ["model.detr.freeze=false"])
    old = to_dict(Config())
    old["model"]["detr"]["freeze"] = True                            # a checkpoint saved before the removal
    assert not hasattr(from_dict(old).model.detr, "freeze")
