"""The gateway process: model, config, supervisor, normalizer, registry, sinks, CLI."""

__all__: list[str] = []
