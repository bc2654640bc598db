"""The search space from a config: custom operations and the list of candidates.

`ops_module` names Python code that registers operations (a dotted module name,
or the path of a .py file) with darts.operations.register_operation; it is
imported before anything is built, by a new run, a resumed one and a worker
process alike. `primitives` lists the candidate operations of every edge (None:
DARTS's 8); each must be registered."""

import importlib
import importlib.util
import os
import sys

from ..darts.operations import PRIMITIVES, operation_names


def import_ops_module(spec, source="config"):
    """Import `spec` (a module name or a .py file) once; returns the module."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{source}: ops_module must be a module name or a .py file, got {spec!r}")
    if spec.endswith(".py"):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ValueError(f"{source}: ops_module {spec} does not exist")
        name = f"minidarts_ops_{abs(hash(path))}"
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ValueError(f"{source}: importing ops_module {spec} failed: {e}") from None
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as e:
        raise ValueError(f"{source}: cannot import ops_module {spec!r}: {e}") from None


def check_primitives(primitives, source="config"):
    """The candidate operations as a tuple (None: DARTS's 8), each registered, no
    repeats, at least two real operations."""
    if primitives is None:
        return PRIMITIVES
    if isinstance(primitives, str) or not isinstance(primitives, list | tuple):
        raise ValueError(f"{source}: primitives must be a list of operation names")
    known = operation_names()
    unknown = [p for p in primitives if p not in known]
    if unknown:
        raise ValueError(
            f"{source}: primitives {unknown} are not registered operations; registered: "
            f"{', '.join(known)} (register more with ops_module)"
        )
    if len(set(primitives)) != len(primitives):
        raise ValueError(f"{source}: primitives repeats a name: {list(primitives)}")
    if len([p for p in primitives if p != "none"]) < 2:
        raise ValueError(f"{source}: primitives needs at least two operations besides 'none'")
    return tuple(primitives)


def parse_list(text):
    """--primitives a,b,c -> ['a', 'b', 'c']."""
    return [v.strip() for v in text.split(",") if v.strip()]


__all__ = ["check_primitives", "import_ops_module", "parse_list"]
