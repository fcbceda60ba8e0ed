"""Sending mail: the worker, building messages, transports and providers."""
