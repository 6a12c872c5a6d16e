"""Device drivers: one folder per transport, one sans-IO codec per device family.

Drivers import `appliance.core.model` only; never the rule engine, queue or uplink.
"""

__all__: list[str] = []
