"""``POST /v1/sessions/{id}/outcome``: recorded on the session, authenticated, OpenAI-style errors."""

from __future__ import annotations

import aiohttp

from slime_openclaw.journal.memory import MemoryJournal
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

U = [{"role": "user", "content": "run the tests"}]
AUTH = {"Authorization": "Bearer k3y"}


async def _post(http: aiohttp.ClientSession, url: str, body: object, headers: dict | None = None
                ) -> tuple[int, dict]:
    async with http.post(url, json=body, headers=headers or AUTH) as response:
        return response.status, await response.json()


async def test_outcome_is_recorded_on_the_episode_session() -> None:
    journal = MemoryJournal()
    async with running_gateway(ScriptedEngine(lambda ids: reply_ids("ok")), journal=journal, api_key="k3y") as (api, _), \
            aiohttp.ClientSession() as http:
        await api.chat.completions.create(model="tiny", messages=U, extra_headers={"X-Session-Id": "ep-7"})
        url = f"{api.base_url}sessions/ep-7/outcome"
        status, body = await _post(http, url, {"score": 0.5, "passed": False, "details": {"checks": 2}})
        assert status == 200 and body == {"object": "session.outcome", "session_id": "ep-7", "score": 0.5,
                                          "passed": False, "recorded": True}
        status, body = await _post(http, url, {"score": 0.5})  # a replay is harmless
        assert status == 200 and body["recorded"] is False
        status, body = await _post(http, url, {"score": 1.0})  # the first outcome stands
        assert status == 409 and body["error"]["code"] == "outcome_conflict"
    outcome = journal.get_outcome("ep-7")
    assert outcome is not None and (outcome.score, outcome.passed, outcome.details) == (0.5, False, {"checks": 2})


async def test_bad_outcomes_get_openai_errors_and_change_nothing() -> None:
    journal = MemoryJournal()
    async with running_gateway(ScriptedEngine(lambda ids: reply_ids("ok")), journal=journal, api_key="k3y") as (api, _), \
            aiohttp.ClientSession() as http:
        await api.chat.completions.create(model="tiny", messages=U, extra_headers={"X-Session-Id": "ep-1"})
        url = f"{api.base_url}sessions/ep-1/outcome"
        status, body = await _post(http, url, {"score": 1.0}, {"Authorization": "Bearer wrong"})
        assert status == 401 and body["error"]["type"] == "authentication_error"
        for bad, param in (({"score": 1.5}, "score"), ({"score": "1"}, "score"), ({"score": True}, "score"),
                           ({}, "score"), ({"score": 1, "passed": "yes"}, "passed"),
                           ({"score": 1, "details": []}, "details"), ({"score": 1, "reward": 2}, "reward")):
            status, body = await _post(http, url, bad)
            assert status == 400 and body["error"]["param"] == param, bad
        async with http.post(url, data=b"{not json", headers={**AUTH, "Content-Type": "application/json"}) as response:
            assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_json"
        status, body = await _post(http, f"{api.base_url}sessions/nobody/outcome", {"score": 1.0})
        assert status == 404 and body["error"]["code"] == "session_not_found"
    assert journal.get_outcome("ep-1") is None and journal.get_outcome("nobody") is None
