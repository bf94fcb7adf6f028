"""The test client's service calls (no ROS needed: the client's ``_call`` runs on fakes)."""

from __future__ import annotations

import pytest

from sampt_ros.ros.client import NodeClient


def _client() -> NodeClient:
    return NodeClient.__new__(NodeClient)  # _call needs no node: the service client is passed in


class _Future:
    def __init__(self, answer=None) -> None:
        self.answer = answer

    def done(self) -> bool:
        return self.answer is not None

    def result(self):
        return self.answer


class _LossyService:
    """A service client whose first ``lost`` requests (or their answers) are lost on the way."""

    srv_name = "/ns/sampt_node/get_state"

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.sent = 0
        self.removed = []

    def wait_for_service(self, timeout_sec: float) -> bool:
        return True

    def call_async(self, request):
        self.sent += 1
        return _Future(None if self.sent <= self.lost else ("answer", request))

    def remove_pending_request(self, future) -> None:
        self.removed.append(future)


def test_a_query_is_asked_again_when_its_request_is_lost():
    service = _LossyService(lost=2)
    assert _client()._call(service, "req", timeout=2.0, resend_after=0.2) == ("answer", "req")
    assert service.sent == 3 and len(service.removed) == 2  # the lost ones are not left pending


def test_a_request_that_must_not_be_repeated_is_sent_once():
    service = _LossyService(lost=1)
    with pytest.raises(TimeoutError, match="did not answer in 0.3 s"):
        _client()._call(service, "req", timeout=0.3)
    assert service.sent == 1


def test_a_query_that_never_gets_an_answer_still_times_out():
    service = _LossyService(lost=100)
    with pytest.raises(TimeoutError, match="get_state did not answer"):
        _client()._call(service, "req", timeout=0.5, resend_after=0.2)
    assert 2 <= service.sent <= 4
