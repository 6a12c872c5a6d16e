"""The gateway process: config, supervisor, normalizer, registry, sinks, queue, uplink, CLI;
appliance.core is the ground floor every package stands on."""

__all__: list[str] = []
