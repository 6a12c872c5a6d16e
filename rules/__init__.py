"""Alarm rule language, evaluator and alarm outputs (IEC 60601-1-8 semantics).

Imports nothing of appliance but `appliance.core` (pyproject.toml's import contracts).
"""

__all__: list[str] = []
