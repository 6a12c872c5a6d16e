"""Over-the-air update agent (TUF + RAUC) and the fleet-side publisher.

Empty until the OTA issue lands.
"""

__all__: list[str] = []
