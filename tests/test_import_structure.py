"""The package's import structure (issue 28): no import circles among llmtts modules, and no import from a lower
layer into a higher one. Drawn from the source (module-level and in-function imports alike; ``if TYPE_CHECKING``
blocks excluded, they never run), so a new circle or layer breach fails here, not in a reviewer's head.

``KNOWN_BREACHES`` lists the layer breaches that exist today, each a piece of issue 28 still to do; the test also
fails when one of them is gone, so the list only shrinks."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "llmtts"
# lower layer -> the higher layers it must not import
LAYERS = {"llmtts.llm": ("llmtts.infer", "llmtts.eval", "llmtts.decoder", "llmtts.interop"),
          "llmtts.codec": ("llmtts.interop",), "llmtts.data": ("llmtts.eval",)}
KNOWN_BREACHES = {
    ("llmtts.codec.export", "llmtts.interop.soprano.encoder"),  # the Soprano adapter (issue 28 step 2)
    ("llmtts.llm.tokenizer", "llmtts.interop.soprano.tokenizer"),
    ("llmtts.llm.tokenizer", "llmtts.interop.soprano.text"),
    ("llmtts.llm.samples", "llmtts.decoder.export"),  # training samples decode: one engine (step 3)
    ("llmtts.llm.samples", "llmtts.infer.generate"),
    ("llmtts.llm.samples", "llmtts.eval.wer"),
    ("llmtts.llm.samples", "llmtts.infer.sampling"),
    ("llmtts.llm.export", "llmtts.infer.sampling"),  # inference defaults validated by the sampler's config
    ("llmtts.llm.info", "llmtts.infer.dtype_choice"),  # `llmtts info --formats`: a command, not the llm layer
    ("llmtts.llm.info", "llmtts.infer.canary"),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _graph() -> dict[str, set[str]]:
    mods, edges = _modules(), defaultdict(set)
    for name, f in mods.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name:
                    edges[name].add(t)
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in list(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_one():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_new_layer_breaches_and_the_known_ones_are_still_real():
    breaches = {(src, dst) for src, dsts in _graph().items() for dst in dsts
                for low, highs in LAYERS.items() if src == low or src.startswith(low + ".")
                if any(dst == h or dst.startswith(h + ".") for h in highs)}
    assert breaches - KNOWN_BREACHES == set(), "a lower layer imports a higher one"
    assert KNOWN_BREACHES - breaches == set(), "fixed: remove it from KNOWN_BREACHES"
