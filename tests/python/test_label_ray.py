"""Batch labelling on Ray (issue 15): `python -m sam3_runtime.label_ray` on a local Ray
cluster of a head and a worker node (tests/python/ray_local_cluster.py), both at
127.0.0.1 and listening on 127.0.0.1 only (dashboard and usage reporting off, nothing sent
anywhere else; checked), two Labeler actors (one CPU each, so one per node): the COCO file
is byte-for-byte the one `sam3 label` writes for the same inputs."""
import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT, SAMPLE

CLI = os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


@pytest.fixture(scope="module")
def cluster():
    p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "ray_local_cluster.py")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    address = p.stdout.readline().strip()
    if not address.startswith("127.0.0.1:"):
        p.kill()
        raise AssertionError("the Ray cluster did not start: " + address + p.stderr.read()[-3000:])
    try:
        yield address, p.pid
    finally:
        p.stdin.close()
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray_images")
    for k in range(5):
        img = Image.open(SAMPLE).convert("RGB")
        if k % 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img.save(d / f"{k:02d}.jpg" if k % 2 else d / f"{k:02d}.png")
    (d / "05.png").write_bytes(b"not a png")
    return d


def test_ray_output_equals_sam3_label(cluster, images, tiny_bundle, tmp_path):
    address, _ = cluster
    want = tmp_path / "cli.json"
    r = subprocess.run([CLI, "label", "--bundle", tiny_bundle, "--images", str(images), "--classes", "cat, dog",
                        "--threshold", "0.2", "--out", str(want)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    got = tmp_path / "ray.json"
    r = subprocess.run([sys.executable, "-m", "sam3_runtime.label_ray", "--bundle", tiny_bundle, "--images",
                        str(images), "--classes", "cat, dog", "--threshold", "0.2", "--out", str(got), "--address",
                        address, "--actors", "2", "--batch-size", "1"], capture_output=True, text=True, env=ENV,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 image(s)" in r.stdout and "1 failed" in r.stdout
    assert got.read_bytes() == want.read_bytes()
    assert not os.path.exists(str(got) + ".shards")


def loopback(ip):
    """127.0.0.1 or ::1, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    a = ipaddress.ip_address(ip.split("%")[0])
    a = getattr(a, "ipv4_mapped", None) or a
    return str(a) in ("127.0.0.1", "::1")


def test_cluster_is_two_nodes_on_loopback_only(cluster):
    import psutil

    address, pid = cluster
    code = ("import ray, json; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps([[n['NodeManagerAddress'], n['Alive']] for n in ray.nodes()]))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True,
                         timeout=180).stdout
    nodes = json.loads(out.strip().splitlines()[-1])
    assert nodes == [["127.0.0.1", True], ["127.0.0.1", True]]
    # every socket of every process of the cluster: loopback at both ends
    procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    assert len(procs) > 4  # GCS, two raylets, workers ...
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for c in conns:
            assert loopback(c.laddr.ip), (proc.name(), c)
            if c.raddr:
                assert loopback(c.raddr.ip), (proc.name(), c)


def test_bad_arguments(tiny_bundle, tmp_path):
    for args, msg in [(["--classes", " , ", "--images", SAMPLE], "no class name"),
                      (["--classes", "cat", "--images", str(tmp_path / "nothing")], "not a folder"),
                      (["--classes", "cat", "--images", str(tmp_path), "--threshold", "3"], "threshold")]:
        r = subprocess.run([sys.executable, "-m", "sam3_runtime.label_ray", "--bundle", tiny_bundle, "--out",
                            str(tmp_path / "o.json"), *args], capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode != 0 and msg in r.stderr, (args, r.stderr)
