"""The structure the map in docs/architecture.md promises, checked on the source (the
layers themselves are import-linter's contract in pyproject.toml, run by .ci/run):

- no module imports another app's private (`_name`) helper: an app extends another only
  through what that app publishes (crm/extend.py, campaigns/extend.py, public services);
- no import cycle between the modules of one app (module-level imports; type-only imports
  under `if TYPE_CHECKING:` do not count);
- a function-level import says why (a comment on its line or right above its block);
- every queued email is built in one place (`message_build`);
- settings have one default, in config/settings/base.py (no `getattr(settings, …)`
  second default in code)."""

from __future__ import annotations

import ast
import io
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("crm", "campaigns", "loyalty", "config")


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    comment_lines: set[int]
    imports: list[tuple[ast.stmt, bool, bool]] = field(default_factory=list)
    # (node, inside a function, under `if TYPE_CHECKING:`)


def _comment_lines(source: str) -> set[int]:
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            lines.add(token.start[0])
    return lines


def _walk(node: ast.AST, module: Module, in_function: bool, type_only: bool) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            module.imports.append((child, in_function, type_only))
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            _walk(child, module, True, type_only)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                _walk_stmt(stmt, module, in_function, True)
            for stmt in child.orelse:
                _walk_stmt(stmt, module, in_function, type_only)
        else:
            _walk(child, module, in_function, type_only)


def _walk_stmt(stmt: ast.stmt, module: Module, in_function: bool, type_only: bool) -> None:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        module.imports.append((stmt, in_function, type_only))
    else:
        _walk(stmt, module, in_function, type_only)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _modules() -> dict[str, Module]:
    modules = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            source = path.read_text()
            module = Module(name, path, ast.parse(source), _comment_lines(source))
            _walk(module.tree, module, False, False)
            modules[name] = module
    return modules


MODULES = _modules()


def _targets(node: ast.Import | ast.ImportFrom, importer: str = "") -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for each name of the statement; a
    `from package import module` counts as importing that module, and a relative import
    is resolved from `importer`'s package."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:
        package = importer.split(".")
        if not (MODULES.get(importer) and MODULES[importer].path.name == "__init__.py"):
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        base = ".".join([*package, *([base] if base else [])])
    found = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        found.append((full, None) if full in MODULES else (base, alias.name))
    return found


def _app(module_name: str) -> str:
    return module_name.split(".")[0]


def _where(module: Module, node: ast.stmt) -> str:
    return f"{module.path.relative_to(ROOT)}:{node.lineno}"


def test_no_module_imports_another_apps_private_name():
    offences = []
    for module in MODULES.values():
        for node, _in_function, _type_only in module.imports:
            for target, name in _targets(node, module.name):
                if _app(target) not in APPS or _app(target) == _app(module.name):
                    continue
                private_module = any(part.startswith("_") for part in target.split(".")[1:])
                if (name or "").startswith("_") or private_module:
                    offences.append(f"{_where(module, node)} takes {target}:{name or ''}")
    offences += _private_attributes()
    assert not offences, "private names of another app:\n" + "\n".join(offences)


def _private_attributes() -> list[str]:
    """`module._name` where `module` is bound to another app's module by an import."""
    offences = []
    for module in MODULES.values():
        bound: dict[str, str] = {}
        for node, _in_function, _type_only in module.imports:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _app(alias.name) in APPS and alias.asname:
                        bound[alias.asname] = alias.name
            else:
                for alias in node.names:
                    for target, name in _targets(node, module.name):
                        if name is None and target.endswith("." + alias.name):
                            bound[alias.asname or alias.name] = target
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and _app(bound[node.value.id]) != _app(module.name)
            ):
                offences.append(
                    f"{module.path.relative_to(ROOT)}:{node.lineno} reads "
                    f"{bound[node.value.id]}.{node.attr}"
                )
    return offences


LAYER = {"crm": 0, "campaigns": 1, "loyalty": 2, "config": 3}


def test_no_app_reaches_up_through_the_app_registry():
    """apps.get_model("loyalty", …) or apps.is_installed("campaigns") in a lower app: an
    upward dependency the import contract cannot see."""
    offences = []
    for module in MODULES.values():
        for node in ast.walk(module.tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get_model", "is_installed", "get_app_config")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            label = node.args[0].value.split(".")[0]
            if label in LAYER and LAYER[label] > LAYER[_app(module.name)]:
                offences.append(f"{module.path.relative_to(ROOT)}:{node.lineno} names {label}")
    assert not offences, "upward through the app registry:\n" + "\n".join(offences)


def test_no_import_cycle_between_the_modules_of_an_app():
    graph: dict[str, set[str]] = defaultdict(set)
    for module in MODULES.values():
        for node, in_function, type_only in module.imports:
            if in_function or type_only:
                continue
            for target, _name in _targets(node, module.name):
                same_app = target in MODULES and _app(target) == _app(module.name)
                if same_app and target != module.name and MODULES[target].tree.body:
                    graph[module.name].add(target)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, "import cycles inside an app:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def test_a_function_level_import_says_why():
    """A comment on the import's line, or above the block of imports it belongs to
    (imports separated only by blank lines and comments)."""
    offences = []
    for module in MODULES.values():
        lines = module.path.read_text().splitlines()
        function_imports = [node for node, in_function, _ in module.imports if in_function]
        import_lines = {
            n for node in function_imports for n in range(node.lineno, node.end_lineno + 1)
        }
        for node in function_imports:
            said = any(n in module.comment_lines for n in range(node.lineno, node.end_lineno + 1))
            above = node.lineno - 1
            while not said and above >= 1:
                if above in module.comment_lines:
                    said = True
                elif above in import_lines or not lines[above - 1].strip():
                    above -= 1
                else:
                    break
            if not said:
                offences.append(_where(module, node))
    assert not offences, "function-level imports without a reason comment:\n" + "\n".join(offences)


def test_every_queued_email_is_built_in_one_place():
    """`Message(...)` and `Message.objects.create(...)` appear once: in message_build."""
    places = []
    for module in MODULES.values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            builds = isinstance(func, ast.Name) and func.id == "Message"
            creates = (
                isinstance(func, ast.Attribute)
                and func.attr in ("create", "get_or_create", "update_or_create")
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "objects"
                and isinstance(func.value.value, ast.Name)
                and func.value.value.id == "Message"
            )
            if builds or creates:
                places.append(f"{module.path.relative_to(ROOT)}:{node.lineno}")
    assert places == ["campaigns/services/messages.py:" + places[0].split(":")[1]], places


def test_settings_have_one_default():
    offences = []
    for module in MODULES.values():
        if module.name.startswith("config.settings"):
            continue
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == "settings"
            ):
                offences.append(f"{module.path.relative_to(ROOT)}:{node.lineno}")
    assert not offences, "getattr(settings, …) second defaults:\n" + "\n".join(offences)
