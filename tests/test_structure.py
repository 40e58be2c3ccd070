"""The package's structure (issue #17): no import cycle, no private name imported from another
package, config keys read only where the schema lives. Static checks of the source (ast), no
compute."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "diffax"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(module: str) -> str:
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _top_level_imports(tree: ast.Module):
    """Import statements run at import time: module level, including under ``if``/``try``
    (not inside functions or classes, which run later)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try):
            stack += node.body + node.orelse + getattr(node, "finalbody", []) + [
                s for h in getattr(node, "handlers", []) for s in h.body]


def _edges(module: str, node: ast.AST) -> set[str]:
    """The diffax modules an import statement of ``module`` loads explicitly."""
    out = set()
    if isinstance(node, ast.Import):
        out |= {a.name for a in node.names if a.name in MODULES}
    elif node.module and node.level == 0 and node.module.startswith("diffax"):
        for alias in node.names:
            sub = f"{node.module}.{alias.name}"
            out.add(sub if sub in MODULES else node.module)
    return {m for m in out if m != module}


def test_no_import_cycle():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in _top_level_imports(ast.parse(path.read_text())):
            graph[module] |= {e for e in _edges(module, node) if e in MODULES}
    # A package importing its own submodules and those importing siblings through the package
    # is how Python packages work; a cycle between two modules is not.
    for module in graph:
        graph[module] = {e for e in graph[module] if not module.startswith(e + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_cycle_check_finds_a_cycle():
    """The check above can fail: a cycle planted in a copy of the graph is reported."""
    a, b = "diffax.schedules", "diffax.samplers._run"
    tree = ast.parse(f"from {b} import sample\n")
    assert _edges(a, next(_top_level_imports(tree))) == {b}
    tree = ast.parse("from diffax import samplers\nfrom diffax.train import build, options\n")
    edges = set().union(*(_edges("x", n) for n in _top_level_imports(tree)))
    assert edges == {"diffax.samplers", "diffax.train.build", "diffax.train.options"}


def _private_imports(path: pathlib.Path):
    module = _module_name(path)
    own = _package_of(module) if module in MODULES else module  # tools/, experiments/
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                and node.module.startswith("diffax")):
            continue
        for alias in node.names:
            if not alias.name.startswith("_") or alias.name.startswith("__"):
                continue
            sub = f"{node.module}.{alias.name}"
            defining = _package_of(sub) if sub in MODULES else (
                _package_of(node.module) if node.module in MODULES else node.module)
            if own != defining and not own.startswith(defining + "."):
                yield f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import " \
                      f"{alias.name}"


def test_no_private_name_is_imported_from_another_package():
    found = [hit for p in MODULES.values() for hit in _private_imports(p)]
    for folder in ("tools", "experiments"):
        found += [hit for p in sorted((ROOT / folder).rglob("*.py"))
                  for hit in _private_imports(p)]
    assert not found, "\n".join(found)


def test_the_private_import_check_finds_one(tmp_path, monkeypatch):
    bad = PACKAGE / "inverse.py"
    text = "from diffax.samplers._run import _check_inputs\nfrom diffax import _ode\n"
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self: text)
    hits = list(_private_imports(bad))
    assert len(hits) == 1 and "_check_inputs" in hits[0], hits


def _private_module_imports(path: pathlib.Path):
    """Imports of a private module (``diffax.<pkg>._x``, by ``from ... import`` or ``import``)
    from outside ``diffax.<pkg>``: a package's private modules are its own; other packages use
    its public names."""
    module = _module_name(path)
    own = _package_of(module) if module in MODULES else module  # tools/, experiments/
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "diffax":
                continue
            private = [i for i, part in enumerate(parts) if part.startswith("_")
                       and not part.startswith("__")]
            if not private:
                continue
            defining = ".".join(parts[:private[0]])  # the package the private module is in
            if own != defining and not own.startswith(defining + "."):
                yield f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}"


def test_no_private_module_is_imported_from_another_package():
    found = [hit for p in MODULES.values() for hit in _private_module_imports(p)]
    for folder in ("tools", "experiments"):
        found += [hit for p in sorted((ROOT / folder).rglob("*.py"))
                  for hit in _private_module_imports(p)]
    assert not found, "\n".join(found)


def test_the_private_module_check_finds_them(monkeypatch):
    """From diffax.inverse, the samplers' private modules are flagged (both import forms);
    diffax's own private modules and a package's own private modules are not."""
    text = ("from diffax.samplers._run import sample\nimport diffax.samplers._base\n"
            "from diffax._checks import check_number\nfrom diffax.samplers import DDPM\n")
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self: text)
    hits = list(_private_module_imports(PACKAGE / "inverse.py"))
    assert len(hits) == 2 and "samplers._run" in hits[0] and "samplers._base" in hits[1], hits
    assert not list(_private_module_imports(PACKAGE / "samplers" / "_edm.py"))


# Config keys are read where the schema lives. Modules that *define* configs (the demo's, the
# task configs' common sections) build them and are not readers; the task examples read theirs
# through diffax.train.options.parse_task_config.
CONFIG_READERS = {"diffax/train/options.py", "diffax/train/build.py", "diffax/cli.py"}
CONFIG_DEFINERS = {"diffax/train/demo.py", "diffax/tasks/defaults.py"}
CONFIG_NAMES = {"config", "cfg", "sample_cfg", "eval_cfg", "data_cfg", "train_cfg"}
SECTIONS = {"seed", "process", "model", "loss", "optim", "train", "data", "sample", "eval",
            "task"}


def _config_reads(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        base = None  # a read: config.<section>, config.get(...), config["key"]
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
                and node.attr in SECTIONS | {"get"}):
            base = node.value
        elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
              and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            base = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "section"):
            yield node.lineno, "section(...)"
            continue
        if isinstance(base, ast.Name) and base.id in CONFIG_NAMES:
            yield node.lineno, ast.unparse(node)[:60]


def test_config_keys_are_read_only_by_options_build_and_cli():
    found = []
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        if rel in CONFIG_READERS | CONFIG_DEFINERS:
            continue
        found += [f"{rel}:{line}: {text}" for line, text in _config_reads(path)]
    assert not found, "\n".join(found)


def test_the_config_read_check_finds_one(monkeypatch):
    text = "def f(config):\n    return config.sample.num_samples, cfg.get('x')\n"
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self: text)
    assert len(list(_config_reads(PACKAGE / "x.py"))) >= 2


def test_configs_take_their_defaults_from_the_options_module():
    """configs/ import defaults from diffax.train.options (where each is written once), never
    from the command line module."""
    found = []
    for path in sorted((ROOT / "configs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and node.module == "diffax":
                names = [f"diffax.{a.name}" for a in node.names]
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                      if n == "diffax.cli" or n.startswith("diffax.cli.")]
    assert not found, "\n".join(found)
