"""The conversation state machine, with no I/O: one input in (`inputs`), a `Step` of server events and
commands out (`commands`); `session.ConversationSession` is its one entry, `receive`.

    session        the router: configuration, the conversation's items, the order of things
    inputs         what the session takes (a closed union)
    commands       what it asks of its driver (a closed union), and `Step`
    input_audio    the input audio buffer (samples the ingest stage decoded)
    turn_taking    server VAD: where turns lie, and what they ask for (over `turn_detector`)
    responses      the running response (its wire state in `response_run`)
    tool_rounds    server tools' calls run and continued; `tool_calls` checks tools and streams calls
    transcription  input audio transcription in a side pass
    snapshot       the conversation's durable state, restored on another server (`aural.runtime.store`)
    config, items, edits, wire_errors: the configuration, the items, client edits, the wire's error codes
"""
