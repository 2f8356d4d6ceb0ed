"""The shared simulator plumbing: faults, the masked request log and the admin API, over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from mlc_sandbox.faults import FaultConfig, FaultInjector
from mlc_sandbox.http import Request, Response, Simulator, SimulatorServer

SECRET = "pl4nted-Secret-value"


class Counter(Simulator):
    """A tiny simulator: counts the POSTs it handled, so tests see what was processed."""

    name = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.settings = {"greeting": "hello"}
        self.handled = 0

    def handle(self, request: Request) -> Response:
        with self.lock:
            if request.method == "POST":
                self.handled += 1
            return Response.json(200, {"handled": self.handled,
                                       "greeting": self.settings["greeting"]})

    def snapshot(self) -> dict:
        return {"handled": self.handled}

    def reset(self, seed: int, data: str) -> None:
        self.handled = 0

    def secrets(self) -> list[str]:
        return [SECRET]


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    running = SimulatorServer(Counter()).start()
    yield running
    running.stop()


def test_faults_are_deterministic_per_seed() -> None:
    config = {"seed": 42, "rates": {"429": 0.2, "500": 0.1, "drop": 0.05}}
    runs = []
    for _ in range(2):
        injector = FaultInjector(FaultConfig.from_dict(config))
        runs.append([injector.decide("GET", "/x") for _ in range(200)])
    assert runs[0] == runs[1]
    assert {"429", "500", "drop", None} == set(runs[0])


def test_unknown_fault_kind_is_refused(server: SimulatorServer) -> None:
    response = requests.put(f"{server.base_url}/_sandbox/faults",
                            json={"rates": {"418": 1.0}}, timeout=5)
    assert response.status_code == 400 and "unknown fault kind" in response.json()["error"]


def test_rate_faults_answer_with_status_and_retry_after(server: SimulatorServer) -> None:
    requests.put(f"{server.base_url}/_sandbox/faults",
                 json={"rates": {"429": 1.0}, "retry_after": 2}, timeout=5).raise_for_status()
    response = requests.post(f"{server.base_url}/api", json={}, timeout=5)
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert server.simulator.handled == 0  # a status fault never reaches the simulator


def test_schedule_targets_the_nth_matching_request(server: SimulatorServer) -> None:
    requests.put(f"{server.base_url}/_sandbox/faults", timeout=5, json={
        "schedule": [{"nth": 2, "fault": "drop_after", "method": "POST", "path": "^/orders"}]})
    assert requests.get(f"{server.base_url}/orders", timeout=5).status_code == 200
    assert requests.post(f"{server.base_url}/orders", json={}, timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{server.base_url}/orders", json={}, timeout=5)
    assert server.simulator.handled == 2  # processed, though the client never heard
    assert requests.post(f"{server.base_url}/orders", json={}, timeout=5).status_code == 200


def test_drop_before_processing_and_stall_past_the_client_timeout(server: SimulatorServer) -> None:
    requests.put(f"{server.base_url}/_sandbox/faults", timeout=5, json={
        "stall_seconds": 1.0,
        "schedule": [{"nth": 1, "fault": "drop", "method": "POST"},
                     {"nth": 2, "fault": "stall", "method": "POST"}]})
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{server.base_url}/a", json={}, timeout=5)
    with pytest.raises(requests.Timeout):
        requests.post(f"{server.base_url}/a", json={}, timeout=0.3)
    assert server.simulator.handled == 0
    faults = requests.get(f"{server.base_url}/_sandbox/faults", timeout=5).json()
    assert faults["injected"] == {"drop": 1, "stall": 1}


def test_request_log_masks_credentials_and_secret_values(server: SimulatorServer) -> None:
    requests.post(f"{server.base_url}/tokens", auth=("client", SECRET), timeout=5,
                  json={"webhookAuthenticationToken": "tok-123456", "note": f"x{SECRET}y"})
    requests.get(f"{server.base_url}/items", timeout=5,
                 headers={"Authorization": f"Bearer {SECRET}"})
    log = requests.get(f"{server.base_url}/_sandbox/requests", timeout=5).json()
    text = json.dumps(log)
    assert SECRET not in text and "tok-123456" not in text
    first, second = log["requests"]
    assert first["headers"]["Authorization"] == "Basic ***"
    assert first["body"] == {"webhookAuthenticationToken": "***", "note": "x***y"}
    assert second["headers"]["Authorization"] == "Bearer ***"
    assert [e["seq"] for e in log["requests"]] == [1, 2]
    since = requests.get(f"{server.base_url}/_sandbox/requests?since=1", timeout=5).json()
    assert [e["path"] for e in since["requests"]] == ["/items"]


def test_a_request_held_across_a_log_clear_stays_out_of_the_new_log(
        server: SimulatorServer) -> None:
    """A stalled answer ends minutes later, in another test's time: it was the cleared log's."""
    requests.put(f"{server.base_url}/_sandbox/faults", timeout=5, json={
        "stall_seconds": 1.0, "schedule": [{"nth": 1, "fault": "stall_after", "method": "POST"}]})
    with pytest.raises(requests.Timeout):
        requests.post(f"{server.base_url}/held", json={}, timeout=0.3)
    requests.delete(f"{server.base_url}/_sandbox/requests", timeout=5).raise_for_status()
    requests.get(f"{server.base_url}/after", timeout=5)
    time.sleep(1.5)  # the held request has ended by now

    log = requests.get(f"{server.base_url}/_sandbox/requests", timeout=5).json()

    assert server.simulator.handled == 1  # processed, answer held
    assert [e["path"] for e in log["requests"]] == ["/after"]


def test_admin_settings_state_and_reset(server: SimulatorServer) -> None:
    admin = f"{server.base_url}/_sandbox"
    assert requests.patch(f"{admin}/settings", json={"nope": 1}, timeout=5).status_code == 400
    requests.patch(f"{admin}/settings", json={"greeting": "hi"}, timeout=5).raise_for_status()
    assert requests.post(f"{server.base_url}/x", json={}, timeout=5).json()["greeting"] == "hi"
    assert requests.get(f"{admin}/state", timeout=5).json() == {"handled": 1}
    requests.post(f"{admin}/reset", json={"seed": 1}, timeout=5).raise_for_status()
    assert requests.get(f"{admin}/state", timeout=5).json() == {"handled": 0}
    assert requests.get(f"{admin}/requests", timeout=5).json()["requests"] == []
