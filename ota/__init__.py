"""Over-the-air update agent (TUF + RAUC), the tryboot helper and the fleet-side publisher.

Imports nothing of appliance but `appliance.core`; the gateway hands the agent its
settings and hooks (ota.service).
"""

__all__: list[str] = []
