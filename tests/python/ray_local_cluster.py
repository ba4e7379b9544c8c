"""A Ray cluster of a head and a worker node on this machine, every address 127.0.0.1
(tests/python/test_label_ray.py). Prints the GCS address, runs until stdin closes.

ray.cluster_utils.Cluster is Ray's way to run several nodes on one machine. With
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray keeps 127.0.0.1 as the node address (otherwise it
swaps a loopback --node-ip-address for the machine's outward address), and a node whose
address is 127.0.0.1 binds its servers to 127.0.0.1 only."""
import os
import sys

assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0" and os.environ.get("RAY_USAGE_STATS_ENABLED") == "0"

from ray.cluster_utils import Cluster  # noqa: E402

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
