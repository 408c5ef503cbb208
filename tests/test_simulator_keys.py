"""The simulator with several API keys, each bound to its own sites (many workspaces, each with its own Uppzy key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from simulator import Simulator, key_fingerprint, parse_key_binding

MakeSim = Callable[..., Awaitable[Simulator]]
KEY_A = "sim-key"  # the default pair: api_key + sites
KEY_B = "sim-key-team-b"  # same first characters as KEY_A on purpose: fingerprints must still differ
KEY_C = "other-key-team-c"


def _client(sim: Simulator, key: str | None) -> httpx.AsyncClient:
    """Raw HTTP to the simulator, sending `key` as X-API-Key when given."""
    headers = {"X-API-Key": key} if key is not None else {}
    return httpx.AsyncClient(base_url=sim.base_url + "/", headers=headers, trust_env=False, timeout=5)


async def _status(sim: Simulator, key: str | None, method: str, path: str) -> httpx.Response:
    async with _client(sim, key) as client:
        return await client.request(method, path, json={"session_id": "s-1", "message": "how do returns work?"})


@pytest.fixture
async def multi(make_sim: MakeSim) -> Simulator:
    """Key A on demo-site (the default pair); key B on site-b; key C on site-c and site-shared."""
    return await make_sim(keys={KEY_B: ("site-b",), KEY_C: ("site-c", "site-shared")})


@pytest.mark.parametrize(("key", "site"), [(KEY_A, "demo-site"), (KEY_B, "site-b"), (KEY_C, "site-c"),
                                           (KEY_C, "site-shared")])
async def test_each_key_chats_on_its_own_sites(multi: Simulator, key: str, site: str) -> None:
    """Every key works on the sites bound to it: async submit, status, site read."""
    response = await _status(multi, key, "POST", f"m2m/sites/{site}/chat/async")
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    assert (await _status(multi, key, "GET", f"m2m/sites/{site}/chat/requests/{request_id}")).status_code == 200
    assert (await _status(multi, key, "GET", f"m2m/sites/{site}")).status_code == 200


@pytest.mark.parametrize(("key", "site"), [(KEY_A, "site-b"), (KEY_B, "demo-site"), (KEY_B, "site-c"),
                                           (KEY_C, "site-b"), (KEY_B, "nowhere")])
@pytest.mark.parametrize(("method", "path"), [("POST", "chat"), ("POST", "chat/async"), ("GET", ""),
                                              ("GET", "sessions"), ("POST", "chat/session/close")])
async def test_a_key_on_a_site_it_is_not_bound_to_is_404_site_not_found(
    multi: Simulator, key: str, site: str, method: str, path: str,
) -> None:
    """The docs' 404 covers a site "not found in scope": another key's site looks exactly like an unknown one."""
    response = await _status(multi, key, method, f"m2m/sites/{site}/{path}".rstrip("/"))
    assert response.status_code == 404
    assert response.json() == {"error": "site not found"}


async def test_a_request_of_another_keys_site_is_not_found(multi: Simulator) -> None:
    """Key B cannot read key A's request, not even through its own site."""
    submitted = await _status(multi, KEY_A, "POST", "m2m/sites/demo-site/chat/async")
    request_id = submitted.json()["request_id"]
    assert (await _status(multi, KEY_B, "GET", f"m2m/sites/site-b/chat/requests/{request_id}")).status_code == 404
    assert (await _status(multi, KEY_B, "GET", f"m2m/sites/demo-site/chat/requests/{request_id}")).status_code == 404


@pytest.mark.parametrize("key", [None, "", "unknown-key", "sim-key-team"])
async def test_an_unknown_key_is_401_whatever_the_site(multi: Simulator, key: str | None) -> None:
    """Unknown keys (also a prefix of a known one) stay 401 invalid_api_key, on every site."""
    for site in ("demo-site", "site-b", "site-c"):
        response = await _status(multi, key, "POST", f"m2m/sites/{site}/chat/async")
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_api_key"}


async def test_recorded_calls_name_the_key_by_a_fingerprint_never_the_key(multi: Simulator) -> None:
    """Each call says which key was used (a fingerprint), so a test can tell which workspace's key a question used."""
    await _status(multi, KEY_A, "POST", "m2m/sites/demo-site/chat/async")
    await _status(multi, KEY_B, "POST", "m2m/sites/site-b/chat/async")
    await _status(multi, KEY_B, "POST", "m2m/sites/demo-site/chat/async")  # 404: recorded too
    await _status(multi, "wrong-key", "POST", "m2m/sites/site-b/chat/async")
    await _status(multi, None, "POST", "m2m/sites/site-b/chat/async")
    calls = multi.calls("chat_async")
    assert [(c.key_id, c.status) for c in calls] == [
        (key_fingerprint(KEY_A), 202), (key_fingerprint(KEY_B), 202), (key_fingerprint(KEY_B), 404),
        (key_fingerprint("wrong-key"), 401), (None, 401),
    ]
    assert [c.path for c in multi.calls("chat_async", key=KEY_B)] == [
        "/api/v1/m2m/sites/site-b/chat/async", "/api/v1/m2m/sites/demo-site/chat/async"]
    assert multi.calls(key=KEY_C) == []
    for call in calls:
        assert call.key_id is None or not any(k in call.key_id for k in (KEY_A, KEY_B, "wrong-key"))
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        record = (await client.get(f"http://{multi.host}:{multi.port}/_simulator/record")).json()
    assert [c["key_id"] for c in record["calls"]][:2] == [key_fingerprint(KEY_A), key_fingerprint(KEY_B)]


def test_fingerprints_are_short_distinct_and_never_the_key() -> None:
    """First 6 characters (at most half of a short key) + a hash suffix: same-prefix keys differ."""
    assert key_fingerprint(KEY_A) != key_fingerprint(KEY_B)
    assert key_fingerprint(KEY_B).startswith("sim-ke…")
    assert key_fingerprint("abcd").startswith("ab…")
    for key in (KEY_A, KEY_B, KEY_C, "abcd", "x"):
        assert key not in key_fingerprint(key)


async def test_sites_of_and_the_default_pair_unchanged(sim: Simulator, multi: Simulator) -> None:
    """Without `keys` only the default pair works, as before; sites_of() tells a key's sites."""
    assert sim.sites_of(KEY_A) == ("demo-site",)
    assert sim.sites_of(KEY_B) is None
    assert multi.sites_of(KEY_C) == ("site-c", "site-shared")
    assert (await _status(sim, KEY_B, "POST", "m2m/sites/site-b/chat/async")).status_code == 401


@pytest.mark.parametrize(("text", "expected"), [
    ("k2=site-b", ("k2", ("site-b",))), ("k3=site-c, site-d", ("k3", ("site-c", "site-d"))),
])
def test_parse_key_binding(text: str, expected: tuple[str, tuple[str, ...]]) -> None:
    """The proposed `--key KEY=SITE[,SITE...]` syntax."""
    assert parse_key_binding(text) == expected


@pytest.mark.parametrize("text", ["k2", "=site", "k2=", "k2=a b", "k2=..", "k2=a/b"])
def test_parse_key_binding_refuses_bad_input(text: str) -> None:
    """Bad bindings are one clear ValueError."""
    with pytest.raises(ValueError, match=r"expected KEY=SITE|not a site id"):
        parse_key_binding(text)
