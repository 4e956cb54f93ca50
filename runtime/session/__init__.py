"""The conversation state machine: client events in, server events and engine commands out, no I/O."""
