"""Connectors to CRMs and other customer stores, and the shared HTTP layer they use."""
