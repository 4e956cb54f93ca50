"""The autoscaling policy asks for replicas by the conversations they hold."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aural.runtime.cluster.scaling import ConversationScaling


@pytest.mark.parametrize(
    ("held", "wanted"),
    [({}, 1), ({"a": 0.0, "b": 0.0}, 1), ({"a": 32.0}, 1), ({"a": 30.0, "b": 5.0}, 2), ({"a": 97.0}, 4)],
)
def test_replicas_follow_the_conversations(held: dict[str, float], wanted: int) -> None:
    replicas, state = ConversationScaling(target=32)(SimpleNamespace(aggregated_metrics={"conversations": held}))
    assert replicas == wanted and state == {"conversations": sum(held.values())}


def test_no_report_yet_keeps_one_replica() -> None:
    assert ConversationScaling()(SimpleNamespace(aggregated_metrics=None))[0] == 1


def test_a_target_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConversationScaling(target=0)
