"""Device drivers: one folder per transport, one sans-IO codec per device family.

Drivers import nothing of appliance but `appliance.core`; never the rule engine, queue or uplink.
"""

__all__: list[str] = []
