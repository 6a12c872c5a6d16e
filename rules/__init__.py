"""Alarm rule language, evaluator and alarm outputs (IEC 60601-1-8 semantics).

Empty until the alarm-engine issue lands; imports `appliance.core.model` only.
"""

__all__: list[str] = []
