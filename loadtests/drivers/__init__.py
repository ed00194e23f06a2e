"""Drivers: one ``Driver`` protocol, one module per transport, each translating its own errors."""
