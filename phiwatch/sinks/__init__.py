"""Where events, alerts and dead-letters go after the archive."""
