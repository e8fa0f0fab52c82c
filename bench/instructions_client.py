"""Sends N requests of one kind over one keep-alive connection (for scripts/bench-instructions)."""
import http.client, json, sys

port, kind, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
state = json.load(open(sys.argv[4]))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data[:200])
    return json.loads(data) if data else None

post = state["post"]
if kind == "post":
    for _ in range(n):
        call("GET", f"/v1/posts/{post}")
elif kind == "first":
    for _ in range(n):
        call("GET", "/v1/posts?limit=20")
elif kind == "deep":
    for _ in range(n):
        call("GET", "/v1/posts?limit=20&cursor=" + state["cursor"])
elif kind == "first-blocks":
    for _ in range(n):
        call("GET", "/v1/posts?limit=20", token=state["token"])
elif kind == "deep-blocks":
    for _ in range(n):
        call("GET", "/v1/posts?limit=20&cursor=" + state["cursor"], token=state["token"])
elif kind == "create":
    ids = [call("POST", f"/v1/posts/{post}/comments", {"body": "a comment"}, state["token"])["id"] for _ in range(n)]
    json.dump(ids, open(sys.argv[4] + ".comments", "w"))
elif kind == "delete":
    ids = json.load(open(sys.argv[4] + ".comments"))[:n]
    for c in ids:
        call("DELETE", f"/v1/posts/{post}/comments/{c}", None, state["token"])
