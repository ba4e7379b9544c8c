"""`sam3 serve` (issue 14) driven by a real HTTP client (httpx) on 127.0.0.1 only: the
X-AnyLabeling-Server routes, answers equal to `sam3 segment` on the same image and prompt,
the encoded-image cache, 8 concurrent clients, the bounded queue (503), the timeout,
malformed requests, the token, and a clean stop on SIGTERM with a request in flight.
The server is the C++ CLI (SAM3_CLI) on the tiny bundle."""
import base64
import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import ROOT, SAMPLE

CLI = os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))
MODEL = "segment_anything_3"


class Server:
    def __init__(self, bundle, *args):
        if not os.path.isfile(CLI):
            pytest.fail(f"C++ CLI not built at {CLI} (run `make cpp`)")
        self.proc = subprocess.Popen([CLI, "serve", "--bundle", bundle, "--host", "127.0.0.1", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # printed once listening
        if "listening on http://127.0.0.1:" not in line:
            self.proc.kill()
            raise AssertionError("server did not start: " + line + self.proc.stderr.read())
        self.url = line.split("listening on ")[1].split()[0]
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def predict(self, image_bytes, headers=None, **params):
        body = {"model": MODEL, "image": "data:image/png;base64," + base64.b64encode(image_bytes).decode(),
                "params": params}
        return self.client.post("/v1/predict", json=body, headers=headers or {})

    def stop(self):
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tiny_bundle):
    s = Server(tiny_bundle, "--workers", "2", "--queue", "16")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def sample():
    with open(SAMPLE, "rb") as f:
        return f.read()


def cli_segment(bundle, out_dir, *prompt):
    r = subprocess.run([CLI, "segment", "--bundle", bundle, "--image", SAMPLE, "--out", str(out_dir), *prompt],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out_dir, "result.json")) as f:
        return json.load(f)["instances"]


def same_as_cli(shapes, instances, label):
    """Each CLI instance is one rectangle shape (its box) with the same score and mask."""
    rects = [s for s in shapes if s["shape_type"] == "rectangle"]
    assert len(rects) == len(instances)
    for s, inst in zip(rects, instances):
        x0, y0, x1, y1 = inst["box"]
        assert s["label"] == label
        assert s["score"] == pytest.approx(inst["score"], abs=0, rel=1e-6)
        assert s["points"] == [pytest.approx(p, rel=1e-6) for p in ([x0, y0], [x1, y0], [x1, y1], [x0, y1])]
        assert s["mask"] == inst["segmentation"]


def test_health_and_models(server):
    h = server.client.get("/health").json()
    assert h["status"] == "healthy" and h["models_loaded"] == 1 and h["timestamp"].endswith("Z")
    m = server.client.get("/v1/models").json()
    assert m["success"] and list(m["data"]) == [MODEL]
    info = m["data"][MODEL]
    assert info["batch_processing_mode"] == "text_prompt"
    assert {"edit_text", "button_send", "add_pos_rect", "edit_conf"} <= {w["name"] for w in info["widgets"]}
    one = server.client.get(f"/v1/models/{MODEL}/info").json()
    assert one["success"] and one["data"]["model_id"] == MODEL
    assert server.client.get("/v1/models/nope/info").json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_text_prompt_equals_cli(server, sample, tiny_bundle, tmp_path):
    r = server.predict(sample, text_prompt="cat", conf_threshold=0.0)
    assert r.status_code == 200
    body = r.json()
    assert body["success"] and body["data"]["description"] == ""
    shapes = body["data"]["shapes"]
    same_as_cli(shapes, cli_segment(tiny_bundle, tmp_path, "--text", "cat", "--threshold", "0"), "cat")
    for s in shapes:  # every field the X-AnyLabeling client reads
        assert {"label", "shape_type", "points", "score", "attributes", "description", "difficult", "direction",
                "flags", "group_id", "kie_linking"} <= set(s)
        if s["shape_type"] == "polygon":
            assert s["points"][0] == s["points"][-1] and len(s["points"]) >= 4


def test_two_concepts_one_encode(server, sample, tiny_bundle, tmp_path):
    img = sample
    before = server.client.get("/health").json()["cache"]
    r = server.predict(img, text_prompt="cat, dog, cat", conf_threshold=0.0)
    labels = {s["label"] for s in r.json()["data"]["shapes"]}
    assert labels <= {"cat", "dog"} and len(labels) == 2
    dog = [s for s in r.json()["data"]["shapes"] if s["label"] == "dog"]
    same_as_cli(dog, cli_segment(tiny_bundle, tmp_path / "dog", "--text", "dog", "--threshold", "0"), "dog")
    after = server.client.get("/health").json()["cache"]
    assert after["misses"] - before["misses"] <= 1  # one image, at most one encode


def test_point_prompt_equals_cli_and_hits_cache(server, sample, tiny_bundle, tmp_path):
    server.predict(sample, text_prompt="cat")  # the image is encoded (or already cached)
    r = server.predict(sample, marks=[{"type": "point", "data": [300, 200], "label": 1},
                                      {"type": "point", "data": [100, 80], "label": 0}])
    assert r.headers["X-Sam3-Cache"] == "hit"
    shapes = r.json()["data"]["shapes"]
    assert [s["shape_type"] for s in shapes] == ["polygon", "rectangle"]
    same_as_cli(shapes, cli_segment(tiny_bundle, tmp_path, "--point", "300,200", "--point", "100,80,neg"),
                "AUTOLABEL_OBJECT")


def test_exemplar_rectangles_equal_cli(server, sample, tiny_bundle, tmp_path):
    r = server.predict(sample, conf_threshold=0.0,
                       marks=[{"type": "rectangle", "data": [420, 300, 120, 90], "label": 1}])  # drawn up-left
    same_as_cli(r.json()["data"]["shapes"],
                cli_segment(tiny_bundle, tmp_path, "--box", "120,90,420,300", "--threshold", "0"), "AUTOLABEL_OBJECT")


def test_show_options_and_no_prompt(server, sample):
    r = server.predict(sample, text_prompt="cat", conf_threshold=0.0, show_boxes=False, show_masks=True)
    assert {s["shape_type"] for s in r.json()["data"]["shapes"]} <= {"polygon"}
    r = server.predict(sample)
    assert r.json() == {"success": True, "data": {"shapes": [], "description": ""}}


def test_eight_concurrent_clients(server, sample):
    jobs = [dict(text_prompt="cat", conf_threshold=0.0),
            dict(marks=[{"type": "point", "data": [300, 200], "label": 1}]),
            dict(marks=[{"type": "point", "data": [200, 300], "label": 1},
                        {"type": "rectangle", "data": [100, 100, 400, 350], "label": 1}])]
    serial = [server.predict(sample, **j).json() for j in jobs]

    def client(i):
        with httpx.Client(base_url=server.url, timeout=300) as c:
            out = []
            for k in range(3):
                j = (i + k) % len(jobs)
                body = {"model": MODEL, "image": base64.b64encode(sample).decode(), "params": jobs[j]}
                out.append((j, c.post("/v1/predict", json=body).json()))
            return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(client, range(8)) for r in rs]
    assert len(results) == 24
    for j, body in results:
        assert body == serial[j]


def test_malformed_requests_keep_the_server_serving(server, sample):
    c = server.client
    r = c.post("/v1/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    assert c.post("/v1/predict", json={"image": "x"}).status_code == 422
    assert c.post("/v1/predict", json=[1, 2]).status_code == 422
    codes = {
        "bad base64": {"model": MODEL, "image": "data:image/png;base64,@@@@"},
        "not an image": {"model": MODEL, "image": base64.b64encode(b"hello world").decode()},
        "truncated png": {"model": MODEL, "image": base64.b64encode(sample[:200]).decode()},
        "other model": {"model": "yolo", "image": base64.b64encode(sample).decode()},
        "point outside": {"model": MODEL, "image": base64.b64encode(sample).decode(),
                          "params": {"marks": [{"type": "point", "data": [5000, 1], "label": 1}]}},
        "bad mark": {"model": MODEL, "image": base64.b64encode(sample).decode(),
                     "params": {"marks": [{"type": "polygon", "data": [1, 2]}]}},
        "threshold": {"model": MODEL, "image": base64.b64encode(sample).decode(),
                      "params": {"text_prompt": "cat", "conf_threshold": 7}},
        "two boxes with points": {"model": MODEL, "image": base64.b64encode(sample).decode(),
                                  "params": {"marks": [{"type": "point", "data": [5, 5], "label": 1},
                                                       {"type": "rectangle", "data": [1, 1, 9, 9], "label": 1},
                                                       {"type": "rectangle", "data": [2, 2, 8, 8], "label": 1}]}},
    }
    want = {"bad base64": "INVALID_IMAGE", "not an image": "INVALID_IMAGE", "truncated png": "INVALID_IMAGE",
            "other model": "MODEL_NOT_FOUND", "point outside": "INVALID_REQUEST", "bad mark": "INVALID_REQUEST",
            "threshold": "INVALID_REQUEST", "two boxes with points": "INVALID_REQUEST"}
    for name, body in codes.items():
        r = c.post("/v1/predict", json=body)
        assert r.status_code == 200, name
        assert r.json()["success"] is False and r.json()["error"]["code"] == want[name], (name, r.text)
    r = c.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["success"] is False
    assert server.predict(sample, text_prompt="cat").json()["success"]  # still serving


def test_body_limit_token_queue_and_timeout(tiny_bundle, sample):
    s = Server(tiny_bundle, "--workers", "1", "--queue", "0", "--cache", "0", "--token", "s3cret",
               "--max-body-mb", "1", "--timeout", "600")
    try:
        c = s.client
        ok = {"Token": "s3cret"}
        assert c.get("/health").status_code == 200  # exempt
        r = c.get("/v1/models")
        assert r.json()["error"]["code"] == "UNAUTHORIZED"
        assert s.predict(sample, headers={"Token": "wrong"}, text_prompt="cat").json()["error"]["code"] == "UNAUTHORIZED"
        assert c.get("/v1/models", headers=ok).json()["success"]
        big = {"model": MODEL, "image": "A" * (2 << 20)}
        assert c.post("/v1/predict", json=big, headers=ok).status_code == 413
        # one worker, no queue: a second request while the first runs gets 503
        first = {}
        t = threading.Thread(target=lambda: first.setdefault("r", s.predict(sample, headers=ok, text_prompt="cat")))
        t.start()
        deadline = time.time() + 60
        while c.get("/health").json()["queue"]["busy"] < 1:
            assert time.time() < deadline and t.is_alive()
            time.sleep(0.005)
        r = s.predict(sample, headers=ok, text_prompt="dog")
        assert r.status_code == 503 and r.json()["detail"] == "Task queue is full, please try again later"
        t.join()
        assert first["r"].json()["success"]
        assert c.get("/health").json()["requests"]["rejected"] == 1
    finally:
        assert s.stop() == 0
    s = Server(tiny_bundle, "--timeout", "0.05", "--cache", "0")
    try:
        r = s.predict(sample, text_prompt="cat")  # the encoder alone takes longer
        assert r.json()["error"]["code"] == "TIMEOUT"
        assert s.client.get("/health").json()["status"] == "healthy"
    finally:
        assert s.stop() == 0


def test_sigterm_finishes_the_request_in_flight(tiny_bundle, sample):
    s = Server(tiny_bundle, "--cache", "0")
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", s.predict(sample, text_prompt="cat", conf_threshold=0.0)))
    t.start()
    deadline = time.time() + 60
    while s.client.get("/health").json()["queue"]["busy"] < 1:
        assert time.time() < deadline
        time.sleep(0.005)
    s.proc.send_signal(signal.SIGTERM)
    t.join(120)
    assert got["r"].status_code == 200 and got["r"].json()["success"]
    assert s.proc.wait(timeout=60) == 0
    assert "stopped" in s.proc.stderr.read()


def test_bad_bundle_and_port_in_use(tiny_bundle, tmp_path):
    r = subprocess.run([CLI, "serve", "--bundle", str(tmp_path / "missing"), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "error" in r.stderr
    s = Server(tiny_bundle)
    try:
        port = s.url.rsplit(":", 1)[1]
        r = subprocess.run([CLI, "serve", "--bundle", tiny_bundle, "--port", port],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "cannot listen" in r.stderr
    finally:
        assert s.stop() == 0


# ---- video routes (/v1/video/*): init from data URIs, prompt, propagate (JSON and SSE)

@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from sam3_tvm.tools.synthetic_clip import write_clip

    d = write_clip(str(tmp_path_factory.mktemp("clip") / "frames"), 5, 160, 120)
    names = sorted(os.listdir(d))
    uris = []
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            uris.append("data:image/jpeg;base64," + base64.b64encode(f.read()).decode())
    return d, uris


def sse_events(client, body):
    events = []
    with client.stream("POST", "/v1/video/propagate/stream", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_video_points_equal_cli(server, clip, tiny_bundle, tmp_path):
    frames_dir, uris = clip
    c = server.client
    init = c.post("/v1/video/init", json={"model": MODEL, "frames": uris, "start_frame_index": 0}).json()
    assert init["success"] and init["data"]["num_frames"] == 5 and (init["data"]["width"], init["data"]["height"]) == (160, 120)
    sid = init["data"]["session_id"]
    # the client sends points normalised by the frame size, object id 10000
    p = c.post("/v1/video/prompt", json={"model": MODEL, "session_id": sid, "frame_index": 0, "points": [[0.4, 0.4]],
                                         "point_labels": [1], "obj_id": 10000}).json()
    assert p["success"] and [m["group_id"] for m in p["data"]["masks"]] == [10000]
    events = sse_events(c, {"model": MODEL, "session_id": sid, "start_frame": 0})
    assert [e["type"] for e in events] == ["started"] + ["progress"] * 5 + ["completed"]
    assert events[0]["total_frames"] == 5 and [e["current_frame"] for e in events[1:6]] == [0, 1, 2, 3, 4]
    results = events[-1]["results"]
    run = subprocess.run([CLI, "track", "--bundle", tiny_bundle, "--video", frames_dir, "--point", "0,64,48",
                          "--direction", "forward", "--out", str(tmp_path / "t")], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    ann = json.load(open(tmp_path / "t" / "result.json"))["annotations"]
    assert sum(s is not None for s in ann[0]["segmentations"]) >= 3  # random weights: frames 1-4 have it
    assert len(ann) == 1  # the CLI's ids are 1..255 (PNG values): object 1, same single-object tracking
    for f in range(5):
        masks = results[str(f)]["masks"]
        want = ann[0]["segmentations"][f]
        if want is None:  # not on this frame
            assert masks == []
            continue
        assert len(masks) == 1 and masks[0]["mask"] == want and masks[0]["shape_type"] == "polygon"
    # the same through the JSON route, frames 1..3
    r = c.post("/v1/video/propagate", json={"model": MODEL, "session_id": sid, "start_frame": 1, "end_frame": 3}).json()
    assert r["success"] and sorted(r["data"]["results"], key=int) == ["1", "2", "3"]
    assert r["data"]["results"]["2"] == results["2"]
    assert c.post(f"/v1/video/cleanup/{sid}", params={"model": MODEL}).json()["success"]
    assert c.post(f"/v1/video/cleanup/{sid}").json()["error"]["code"] == "SESSION_NOT_FOUND"


def test_video_text_prompt_and_disconnect(server, clip):
    c = server.client
    sid = c.post("/v1/video/init", json={"model": MODEL, "frames": clip[1]}).json()["data"]["session_id"]
    p = c.post("/v1/video/prompt", json={"model": MODEL, "session_id": sid, "frame_index": 0, "text_prompt": "square",
                                         "params": {"conf_threshold": 0.0}}).json()
    assert p["success"] and all(m["label"] == "square" for m in p["data"]["masks"])
    # a client that leaves after the first event: the server stops that propagation and
    # goes on serving
    with c.stream("POST", "/v1/video/propagate/stream", json={"model": MODEL, "session_id": sid}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break
    deadline = time.time() + 60
    while c.get("/health").json()["queue"]["busy"]:
        assert time.time() < deadline
        time.sleep(0.01)
    events = sse_events(c, {"model": MODEL, "session_id": sid, "start_frame": 0})
    assert events[-1]["type"] == "completed" and sorted(events[-1]["results"], key=int) == ["0", "1", "2", "3", "4"]
    assert c.post(f"/v1/video/cleanup/{sid}").json()["success"]


def test_video_bad_requests(server, clip, sample):
    c = server.client
    bad = lambda path, body: c.post(path, json=body).json()["error"]["code"]
    assert bad("/v1/video/init", {"model": MODEL, "frames": []}) == "INVALID_REQUEST"
    assert bad("/v1/video/init", {"model": MODEL, "frames": ["@@"]}) == "INVALID_IMAGE"
    assert bad("/v1/video/init", {"model": MODEL, "frames": [clip[1][0], base64.b64encode(b"nope").decode()]}) == "INVALID_IMAGE"
    two_sizes = [clip[1][0], "data:image/png;base64," + base64.b64encode(sample).decode()]
    assert bad("/v1/video/init", {"model": MODEL, "frames": two_sizes}) == "INVALID_IMAGE"
    assert bad("/v1/video/init", {"model": "other", "frames": clip[1]}) == "MODEL_NOT_FOUND"
    assert c.post("/v1/video/init", content=b"[").status_code == 422
    assert bad("/v1/video/prompt", {"model": MODEL, "session_id": "nope", "frame_index": 0, "text_prompt": "a"}) == "SESSION_NOT_FOUND"
    sid = c.post("/v1/video/init", json={"model": MODEL, "frames": clip[1]}).json()["data"]["session_id"]
    base = {"model": MODEL, "session_id": sid}
    assert bad("/v1/video/prompt", {**base, "frame_index": 9, "text_prompt": "a"}) == "INVALID_REQUEST"
    assert bad("/v1/video/prompt", {**base, "frame_index": 0}) == "INVALID_REQUEST"
    assert bad("/v1/video/prompt", {**base, "frame_index": 0, "points": [[3, 40]], "point_labels": [1]}) == "INVALID_REQUEST"
    assert bad("/v1/video/prompt", {**base, "frame_index": 0, "points": [[0.1, 0.1]], "point_labels": [1, 0]}) == "INVALID_REQUEST"
    assert bad("/v1/video/propagate", base) == "INVALID_REQUEST"  # no prompt yet
    assert c.post("/v1/video/propagate/stream", json=base).json()["error"]["code"] == "INVALID_REQUEST"
    assert c.post(f"/v1/video/cleanup/{sid}").json()["success"]
    assert c.get("/health").json()["video_sessions"]["open"] == 0
