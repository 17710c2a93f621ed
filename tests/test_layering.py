"""The dependency direction of STYLE.md, enforced by walking every module's imports."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nextscale"

# Layer of each top-level part; a module may import only parts of a lower layer, its own part, or a side leaf.
LAYERS = {
    "cli": 7,
    "scaling": 6,
    "training": 5,
    "evaluation": 4,
    "sampling": 3,
    "tokenizer": 2,
    "transformer": 2,
    "text": 2,
    "scales": 1,
    "layers": 1,
    "pretrained": 1,
    "official_files": 1,
}
SIDE_LEAVES = {"data", "distributed", "presets"}
MAY_IMPORT_DISTRIBUTED = {"training", "evaluation", "cli"}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_parts(tree: ast.AST, path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = path.relative_to(PACKAGE).parent.parts[
                    : len(path.relative_to(PACKAGE).parent.parts) - node.level + 1
                ]
                module = ".".join(("nextscale", *base, node.module or ""))
                names = [module]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "nextscale" and len(pieces) > 1 and pieces[1]:
                parts.add(pieces[1])
    return parts


def _violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(path)
        if part in ("__init__", "__main__"):
            continue
        for target in _imported_parts(ast.parse(path.read_text()), path):
            if target == part or target == "__init__":
                continue
            if target == "cli":
                problems.append(f"{path.relative_to(PACKAGE)} imports cli (nothing imports cli)")
            elif target == "distributed" and part not in MAY_IMPORT_DISTRIBUTED:
                problems.append(f"{path.relative_to(PACKAGE)} imports distributed")
            elif target in SIDE_LEAVES:
                continue
            elif part in SIDE_LEAVES:
                if target not in ("scales", "pretrained", "layers", "tokenizer", "transformer", "text"):
                    problems.append(f"{path.relative_to(PACKAGE)} (side leaf) imports {target}")
            elif {part, target} == {"tokenizer", "transformer"}:
                problems.append(f"{path.relative_to(PACKAGE)}: tokenizer and transformer never import each other")
            elif LAYERS.get(target, 0) >= LAYERS.get(part, 0):
                problems.append(f"{path.relative_to(PACKAGE)} ({part}) imports upward: {target}")
    return problems


def test_imports_point_downward_only():
    assert _violations() == []


def test_model_code_never_touches_distributed_or_print():
    for part in ("tokenizer", "transformer", "layers", "sampling"):
        for path in (PACKAGE / part).rglob("*.py"):
            source = path.read_text()
            assert "torch.distributed" not in source, f"{path} uses torch.distributed"
            assert ".cuda()" not in source, f"{path} calls .cuda()"
            tree = ast.parse(source)
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
            assert not calls, f"{path} calls print()"
