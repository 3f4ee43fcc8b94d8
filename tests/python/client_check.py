"""Drives `activitylog serve` with the real python-scrapinghub client (2.9.0), unchanged.

Usage: python client_check.py ENDPOINT
Exits non-zero (with a traceback) on the first expectation that does not hold.
"""
import sys

from scrapinghub import ScrapinghubClient
from scrapinghub.client.exceptions import BadRequest
from scrapinghub.hubstorage.activity import Activity as HsActivity

endpoint = sys.argv[1]
client = ScrapinghubClient("APIKEY", endpoint=endpoint)

p1 = client.get_project(1111111)
p2 = client.get_project(2222222)

# An empty batch is accepted and stores nothing.
p1.activity.add([])
assert p1.activity.list() == [], p1.activity.list()

# Batches via add([...]), with the client's own JSON spacing and \u escapes.
p1.activity.add([{"counter": i, "event": "job:started", "note": "caf\u00e9 \U0001F600"} for i in range(10)])
p1.activity.add([{"counter": i} for i in range(10, 20)])
got = [e["counter"] for e in p1.activity.list()]
assert got == list(range(19, -1, -1)), got
first = p1.activity.list(count=20)[-1]
assert first["note"] == "caf\u00e9 \U0001F600", first

# count
assert [e["counter"] for e in p1.activity.list(count=3)] == [19, 18, 17]
assert [e["counter"] for e in p1.activity.iter(count=2)] == [19, 18]

# meta='_ts'
newest = p1.activity.list(count=1, meta="_ts")[0]
assert newest["counter"] == 19 and isinstance(newest["_ts"], int) and newest["_ts"] > 1_600_000_000_000, newest

# A filter, as the real service applies it on activity.
got = p1.activity.list(count=2, filter='["counter", ">", [5]]')
assert [e["counter"] for e in got] == [19, 18], got

# Several filters as the client sends a list of them (one `filter` parameter each): all must
# match. And meta as a list (one `meta` parameter each), in the order given.
got = p1.activity.list(filter=[("counter", ">", [5]), ["counter", "<", [8]]])
assert [e["counter"] for e in got] == [7, 6], got
newest = p1.activity.list(count=1, meta=["_project", "_key"])[0]
assert list(newest)[-2:] == ["_project", "_key"], newest
assert newest["_project"] == 1111111 and newest["_key"].startswith("1111111/"), newest

# The multi-project query through the client's generic request helper.
for foo in (2, 3, 4):
    p1.activity.add([{"foo": foo}])
p2.activity.add([{"bar": 1}])
projects = HsActivity(client._hsclient, "projects")
got = list(projects.apiget(params={"pcount": 1, "meta": "_project", "p": [1111111, 2222222]}))
assert got == [{"bar": 1, "_project": 2222222}, {"foo": 4, "_project": 1111111}], got

# A bad line raises the client's BadRequest, and nothing of that batch is stored.
before = len(p1.activity.list())
try:
    client._hsclient.request(method="POST", url=endpoint.rstrip("/") + "/activity/1111111",
                             data=b'{"ok": 1}\n{"broken": ')
except BadRequest as e:
    assert "line 2" in str(e), str(e)
else:
    raise AssertionError("a bad line was accepted")
try:
    # json.dumps writes NaN, which is not JSON.
    p1.activity.add([{"ok": 1}, {"x": float("nan")}])
except BadRequest as e:
    assert "line 2" in str(e), str(e)
else:
    raise AssertionError("NaN (invalid JSON) was accepted")
assert len(p1.activity.list()) == before

print("python-scrapinghub client: all checks passed")
