"""Which methods a baseline's model family refuses, asked before any job is stored (and by the UI to grey them).

Example::

    >>> refusal(store, fp, "heads")     # None on every supported family; a sentence otherwise
    >>> refuse(store, fp, recipes)      # raises UserError naming the recipe, the family and the reason
                                        # (or the optional runtime a step needs and this machine lacks)
"""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from . import families
from .config import UserError
from .report import recipe_name

if TYPE_CHECKING:
    from .recipes import Recipe
    from .store import Store


def refusal(store: Store, baseline: str, method: str) -> str | None:
    """Why ``method`` cannot run on this baseline's model family (one sentence for a tooltip), or None.

    Example: ``refusal(store, fp, "heads")`` -> None on every supported family (families.REFUSALS lists the rest).
    """
    return families.refusal(model_type(store, baseline), method)


def model_type(store: Store, baseline: str) -> str | None:
    """The baseline's ``model_type``, from its prepared folder or its source folder's config.json (no torch)."""
    from .models import default_model_dir

    b = store.baseline(baseline) or {}
    src = b.get("model_source") or {}
    folder = {"default": default_model_dir(), "local": src.get("ref")}.get(src.get("kind"))
    return families.model_type_at(b.get("path")) or families.model_type_at(folder)


def refuse(store: Store, baseline: str, recipes: list[Recipe]) -> None:
    """Refuse, before any job is stored, a recipe with a step that cannot run on the baseline's family."""
    refuse_missing_runtimes(recipes)
    kind = model_type(store, baseline)
    for r in recipes:
        for s in r.steps:
            why = families.refusal(kind, s.method, s)
            if why:
                raise UserError(f"{recipe_name(r.key)}: {why}")


def refuse_missing_runtimes(recipes: list[Recipe]) -> None:
    """Refuse a recipe whose step needs an optional runtime this machine lacks: asked before a baseline is even
    registered, since no family changes that answer."""
    for r in recipes:
        for s in r.steps:
            why = missing_runtime(s)
            if why:
                raise UserError(f"{recipe_name(r.key)}: {why}")


# optional runtimes: what a step names -> (the modules it imports, the requirements file that installs them)
OPTIONAL = {"openvino": (("openvino", "nncf"), "requirements-openvino.txt")}


def optional_missing(choice: str) -> bool:
    """True if ``choice`` (a kernel or engine name) is an optional runtime this machine lacks; the dashboard marks
    such choices in its lists."""
    return choice in OPTIONAL and any(importlib.util.find_spec(m) is None for m in OPTIONAL[choice][0])


def missing_runtime(step) -> str | None:
    """Why ``step`` cannot run here because it needs an optional runtime this machine lacks, or None."""
    wanted = getattr(step, "kernel", None) if step.method == "quant" else getattr(step, "engine", None)
    if not optional_missing(wanted):
        return None
    return f"{wanted} is an optional runtime that is not installed here: pip install -r {OPTIONAL[wanted][1]}"
