"""The package's layout: five layers, each importing only from the layers below it,
no module past 450 lines, and nothing but entry files directly in minidarts/.

The imports are read with `ast`, every one of them (inside functions too), and
resolved to the module they name; the layer order is minidarts.LAYERS."""

import ast
from pathlib import Path

import pytest

import minidarts

PACKAGE = Path(minidarts.__file__).resolve().parent
LAYERS = minidarts.LAYERS
# what may sit directly in minidarts/: the package, the command line, and entry shims
ENTRY_FILES = {"__init__.py", "__main__.py", "assign.py", "bench.py", "functional.py"}
SHIM_MAX_LINES = 40
MAX_LINES = 450


def imported_modules(source, module, is_package=False):
    """The dotted names of everything `source` (the text of `module`, e.g.
    'minidarts.darts.cell') imports: 'from .x import a' gives both 'pkg.x' and
    'pkg.x.a' (a may be a module), absolute imports as written."""
    package = module if is_package else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if node.module:  # 'from .. import nn' names minidarts.nn, not the package
                names.append(target)
            names += [f"{target}.{alias.name}" for alias in node.names]
    return names


def layer_of(dotted):
    """The layer index of a dotted module name inside minidarts, 'top' for the
    package itself or an entry file, None outside minidarts."""
    parts = dotted.split(".")
    if parts[0] != "minidarts":
        return None
    if len(parts) == 1 or parts[1] not in LAYERS:
        return "top"
    return LAYERS.index(parts[1])


def upward_imports(source, module, is_package=False):
    """The imports of `module` that reach above its own layer (or into the package's
    top, which imports every layer)."""
    own = layer_of(module)
    bad = []
    for name in imported_modules(source, module, is_package):
        target = layer_of(name)
        if target is None:
            continue
        if target == "top":
            # 'from .. import nn' names a layer: judged by the longer name; a bare
            # 'from .. import x' of a non-layer name, or 'import minidarts', is upward
            parts = name.split(".")
            if len(parts) == 2 and parts[1] not in LAYERS and not _is_module(parts[1]):
                bad.append(name)
            elif len(parts) == 1:
                bad.append(name)
            continue
        if target > own:
            bad.append(name)
    return sorted(set(bad))


def _is_module(name):
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        dotted = ".".join(("minidarts", *rel.with_suffix("").parts))
        yield path, rel, dotted.removesuffix(".__init__")


def test_layers_exist_and_each_module_imports_only_downward():
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").exists(), f"layer {layer} is not a package"
    problems = []
    for path, rel, dotted in package_modules():
        if len(rel.parts) == 1:
            continue  # entry files may import every layer
        for name in upward_imports(path.read_text(), dotted, path.name == "__init__.py"):
            problems.append(f"{rel} imports {name}")
    assert not problems, "imports from a higher layer:\n" + "\n".join(problems)


def test_only_entry_files_directly_in_the_package():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ENTRY_FILES)
    assert not loose, f"modules directly in minidarts/ (put them in a layer): {loose}"
    for name in ENTRY_FILES - {"__init__.py", "__main__.py"}:
        n = len((PACKAGE / name).read_text().splitlines())
        assert n <= SHIM_MAX_LINES, f"{name} is an entry shim and has {n} lines"


def test_no_module_past_450_lines():
    long = {
        str(rel): n
        for path, rel, _ in package_modules()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them along their seams): {long}"


@pytest.mark.parametrize(
    "source, module, expected",
    [
        ("from ..darts.cell import Cell\n", "minidarts.engine.ops", ["minidarts.darts.cell"]),
        ("def f():\n    from ..jobs import data\n", "minidarts.nn.conv", ["minidarts.jobs"]),
        ("from .. import nn\n", "minidarts.engine.backend", ["minidarts.nn"]),
        ("import minidarts.jobs.plots\n", "minidarts.darts.genotype", ["minidarts.jobs"]),
        ("import minidarts\n", "minidarts.darts.genotype", ["minidarts"]),
        ("from .. import nn\nfrom ..engine import backend\n", "minidarts.darts.cell", []),
        ("from . import backend\nimport numpy\n", "minidarts.engine.ops", []),
    ],
)
def test_the_checker_catches_an_upward_import(source, module, expected):
    found = upward_imports(source, module)
    assert all(any(f.startswith(e) for f in found) for e in expected), found
    assert bool(found) == bool(expected), found


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "minidarts", "assign", "--help"],
        ["-m", "minidarts", "bench", "--help"],
        ["-m", "minidarts.assign", "--help"],  # the old entry points keep working
        ["-m", "minidarts.bench", "--help"],
        ["-m", "minidarts", "search", "--help"],
        ["-m", "minidarts", "train", "--help"],
        ["-m", "minidarts", "sweep", "--help"],
        ["-m", "minidarts", "experiment", "--help"],
    ],
)
def test_one_command_line_with_help_on_each_command(argv):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    command = argv[1] if argv[1] != "minidarts" else f"minidarts {argv[2]}"
    assert f"usage: python -m {command}" in proc.stdout.replace("\n", " ")


def test_old_import_path_of_functional_is_the_same_module():
    import minidarts.functional as old
    from minidarts.nn import functional

    assert old is functional
