"""Hardware-in-the-loop bench: device simulators, fault injection, scenarios."""

__all__: list[str] = []
