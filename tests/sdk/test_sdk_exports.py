"""What `aural.sdk` exports: its own API, and every event and model of the protocol a user meets."""

from __future__ import annotations

import aural.sdk
from aural.protocols import CLIENT_EVENTS, SERVER_EVENTS, ClientEvent, ServerEvent, models


def test_every_name_in_all_is_there() -> None:
    assert len(set(aural.sdk.__all__)) == len(aural.sdk.__all__)
    assert [name for name in aural.sdk.__all__ if not hasattr(aural.sdk, name)] == []


def test_every_event_of_either_direction_is_exported_as_the_protocols_own_class() -> None:
    for cls in [*SERVER_EVENTS.values(), *CLIENT_EVENTS.values()]:
        assert getattr(aural.sdk, cls.__name__) is cls
        assert cls.__name__ in aural.sdk.__all__
    assert (aural.sdk.ServerEvent, aural.sdk.ClientEvent) == (ServerEvent, ClientEvent)


def test_every_model_is_exported() -> None:
    classes = {name for name, value in vars(models).items() if isinstance(value, type)}
    defined_there = {name for name in classes if getattr(models, name).__module__ == models.__name__}
    assert defined_there - {"WireModel"} <= set(aural.sdk.__all__)
