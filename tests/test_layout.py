"""The package's layout a reader relies on: no import cycles in lda.

The graph is read from the source with ast, not by importing: an edge for
every `import lda...` and `from . import ...`, also inside functions.  A
cycle among module-level imports breaks at import time (a name is missing
from a half-initialised module); a cycle through a function-level import
works, but it still means two modules that cannot be read or tested apart,
and it hides the first kind (grammar -> script -> parser -> grammar in
lda.sieve was one).  So neither kind is allowed.
"""

import ast
import os
from pathlib import Path

from conftest import without_site

import lda

PACKAGE = Path(lda.__file__).resolve().parent


def modules():
    """{dotted name: (path, is a package)} for every module under lda/."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["lda", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imported(name, path, is_package, known):
    """(module it names, at module level?) for each import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name.split(".") if is_package else name.split(".")[:-1]

    def walk(node, top):
        for child in ast.iter_child_nodes(node):
            inside = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                    ast.Lambda))
            if isinstance(child, ast.Import):
                yield from ((alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[:len(package) - child.level + 1] if child.level else []
                module = ".".join(base + ([child.module] if child.module else []))
                for alias in child.names:
                    # `from . import x` needs the package itself only when
                    # x is a name defined there, not a submodule
                    submodule = f"{module}.{alias.name}"
                    yield (submodule if submodule in known else module), inside
            yield from walk(child, inside)

    return walk(tree, True)


def import_graph(module_level_only):
    """{module: set of lda modules it imports}.  Importing lda.a.b imports
    the package lda.a first, so that is an edge too, unless the importer is
    inside lda.a (which is then already being imported)."""
    known = modules()
    graph = {name: set() for name in known}
    for name, (path, is_package) in known.items():
        for target, top in imported(name, path, is_package, known):
            if target not in known or target == name or (module_level_only and not top):
                continue
            graph[name].add(target)
            parts = target.split(".")
            for end in range(1, len(parts)):
                ancestor = ".".join(parts[:end])
                if ancestor != name and not name.startswith(ancestor + "."):
                    graph[name].add(ancestor)
    return graph


def cycles(graph):
    """The strongly connected components with more than one module
    (Tarjan's algorithm), each sorted: every import cycle lies in one."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_relative_and_function_level_imports():
    everything, top_only = import_graph(False), import_graph(True)
    assert "lda.sieve.errors" in top_only["lda.sieve.grammar"]  # from .errors import ...
    assert "lda.sieve" in top_only["lda.sieve.dryrun"]  # from . import Envelope, ...
    assert "lda.sieve.parser" in everything["lda.sieve.script"]  # inside compile_script
    assert "lda.sieve.parser" not in top_only["lda.sieve.script"]


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_module_level_imports():
    assert cycles(import_graph(module_level_only=True)) == []


def test_no_import_cycle_through_function_level_imports_either():
    assert cycles(import_graph(module_level_only=False)) == []


def test_every_name_in_the_public_api_resolves():
    for name in lda.__all__:
        assert getattr(lda, name) is not None, name
    assert issubclass(lda.QuotaExceeded, lda.LdaError)
    assert set(lda.__all__) <= set(dir(lda))


def test_importing_lda_alone_loads_no_other_module():
    """Every `lda deliver` imports the package first: its __all__ names are
    imported on first use, never by `import lda`."""
    script = ("import sys\n"
              "before = set(sys.modules)\n"
              "import lda\n"
              "print(' '.join(sorted(set(sys.modules) - before)))\n")
    assert without_site(script, os.environ).stdout.split() == ["lda"]


# Each area may use the ones below it, never one above: the store and the
# start-up stand-ins know nothing of delivering, and nothing a delivery
# imports knows of the LMTP server, the admin commands or the CLI.
ABOVE = {
    "lda.startup": ("lda.store", "lda.deliver", "lda.sieve", "lda.lmtp", "lda.admin",
                    "lda.cli"),
    "lda.store": ("lda.deliver", "lda.sieve", "lda.lmtp", "lda.admin", "lda.cli"),
    "lda.deliver": ("lda.lmtp", "lda.admin", "lda.cli"),
    "lda.sieve": ("lda.lmtp", "lda.admin", "lda.cli"),
    "lda.lmtp": ("lda.admin", "lda.cli"),
    "lda.admin": ("lda.lmtp", "lda.cli"),
}


def test_no_module_imports_an_area_above_its_own():
    wrong = []
    for module, targets in import_graph(module_level_only=False).items():
        for area, above in ABOVE.items():
            if module == area or module.startswith(area + "."):
                wrong += [f"{module} -> {t}" for t in targets
                          if any(t == a or t.startswith(a + ".") for a in above)]
    assert wrong == []


def test_every_package_is_installed():
    """pyproject.toml lists the packages by hand: one left out is missing
    from a non-editable install (`pip install .`, the mail-host install),
    while the editable install of a checkout still finds it."""
    import tomllib

    root = Path(lda.__file__).parent
    found = {".".join(p.parent.relative_to(root.parent).parts)
             for p in root.rglob("__init__.py") if "__pycache__" not in p.parts}
    pyproject = tomllib.loads((root.parent / "pyproject.toml").read_text())
    assert set(pyproject["tool"]["setuptools"]["packages"]) == found


def test_click_is_imported_only_under_lda_cli():
    """STYLE.md: the command line is a thin click skin over the library, so
    click appears in lda/cli/ (any of its modules) and nowhere else."""
    known = modules()
    importers = sorted(name for name, (path, is_package) in known.items()
                       if any(target == "click" or target.startswith("click.")
                              for target, _ in imported(name, path, is_package, known)))
    assert "lda.cli.root" in importers  # the check sees `import click`
    assert [n for n in importers if n != "lda.cli" and not n.startswith("lda.cli.")] == []


def test_only_main_reaches_the_cli():
    """lda/main.py hands an admin command to lda.cli after a delivery was
    ruled out; no library module imports the command line."""
    graph = import_graph(module_level_only=False)
    callers = sorted(name for name, targets in graph.items()
                     if not (name == "lda.cli" or name.startswith("lda.cli."))
                     and any(t == "lda.cli" or t.startswith("lda.cli.") for t in targets))
    assert callers == ["lda.main"]
