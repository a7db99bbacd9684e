"""The compression engine: baselines, recipes, jobs, measurement and the results store.

The app and the CLI use only what is imported here; method modules stay private to the engine.
"""
from .config import Paths, UserError, hardware_id, resolve
from .recipes import Recipe, spec_type
from .specs import SpecError

__all__ = ["Paths", "UserError", "hardware_id", "resolve", "Recipe", "SpecError", "spec_type"]
