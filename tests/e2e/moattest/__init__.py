"""Helpers for the moatd end-to-end suite: test PKI, origins, the daemon, and clients."""
