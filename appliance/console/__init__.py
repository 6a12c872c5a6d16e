"""The local web console: HTTPS on the management interface, the live view, acknowledge and pairing."""
