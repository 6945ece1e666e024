"""Blob clients and durable local files shared by the archive, state store and outbox."""
