"""The built-in connectors. Each is registered through the `dialwhom.connectors` entry-point
group exactly like a third-party plugin, and imports only from the public `dialwhom.sdk`."""
