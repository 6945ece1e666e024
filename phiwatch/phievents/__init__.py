"""The `phi-events` hub as `normalize` writes it: which partition each event must reach
(routing), the bytes of a message (message) and the hand-over itself (forwarder). `detect`
reads the messages back with `message.decode_message`."""
