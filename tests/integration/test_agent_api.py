# SPDX-License-Identifier: Apache-2.0
"""The CLI and kybernate-runc through kybernate-agent's local API (issue 5
item 3, issue 6 item 4; DESIGN.md restore step 3): a standalone agent
(`kybernate-agent --standalone`, no Kubernetes) on a harness node, with
kybernate-uploader and a real registry (tests/harness/registry.py) that
wants basic auth. The credentials are ONLY in the uploader's environment:
not in the CLI's, not in containerd's (which kybernate-runc inherits), and
the node config names no auth file.

Checked:
  - `kybernate --agent SOCK --json checkpoint … --to oci://…`: the agent's
    worker checkpoints, its uploader pushes; the CLI prints what it prints
    in-process (container, name, ref, digest, size, totalMs); the tag is in
    the registry, the agent's local copy gone;
  - `kybernate --agent SOCK restore oci://…`: the CLI has the agent fetch,
    containerd creates the container through kybernate-runc, whose node
    config names the agent socket (`agentSocket`): it asks the agent too
    (the agent logs two fetches) and reads the node cache only; the counter
    goes on. The same restore with `agentSocket` removed from the node
    config fails in kybernate-runc with the registry's 401: it never had
    credentials, so the restore before worked through the agent alone;
    nothing is left of the failed container;
  - the agent down (stopped, socket gone): the CLI's fetch through the
    agent fails naming the socket; a restore whose image the uploader
    fetched but whose kybernate-runc finds no agent fails naming the agent
    socket; no container is left behind.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import tool_path
from tests.harness.checks import wait_count, wait_for
from tests.harness.registry import Registry
from tests.harness.uploader import Uploader
from tests.integration.test_agent import local_api
from tests.integration.test_restore import assert_goes_on, checksum_of
from tests.integration.test_store_oci import auth_file

REPO = "kyb/agentapi"


class StandaloneAgent:
    def __init__(self, build_dir, base, node, conf, uploader, cache):
        self.socket = base / "agent" / "agent.sock"
        self.log_path = base / "agent.log"
        (base / "agent").mkdir(parents=True, exist_ok=True)
        self.cmd = [str(build_dir / "cmd" / "kybernate-agent"), "--standalone",
                    "--state-dir", str(base / "agent-state"), "--socket", str(self.socket),
                    "--config", str(conf), "--containerd", str(node.socket),
                    "--uploader", str(uploader), "--log-level", "debug"]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KYBERNATE_", "KYB_CUDA_DOUBLE", "AWS_"))}
        env.update({"KYBERNATE_IMAGE_CACHE": str(cache), "PATH": tool_path(),
                    "KYBERNATE_LIBCUDA": "/nonexistent/libcuda.so.1"})
        self.env = env
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log_tail()}")
            try:
                return local_api(self.socket, "GET", "/v1/healthz", timeout=5)[0] == 200
            except OSError:
                return False
        wait_for(up, 30, "the standalone agent to answer /v1/healthz", interval=0.1)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        return self.proc.returncode

    def log_tail(self, n=4000):
        return self.log_path.read_text(errors="replace")[-n:]

    def fetches(self):
        return self.log_path.read_text(errors="replace").count("POST /v1/images/fetch")


def write_conf(path, local, store, agent_socket=None):
    conf = {"defaultStore": f"file://{local}", "stores": [store],
            "runtime": {"delegate": "runc"}}
    if agent_socket is not None:
        conf["agentSocket"] = str(agent_socket)
    path.write_text(json.dumps(conf))


def kyb(build_dir, node, cache, *args, timeout=300):
    """The CLI as a user runs it: no storage credentials, no KYBERNATE_* settings."""
    cmd = [str(build_dir / "cmd" / "kybernate"), "--address", str(node.socket),
           "--namespace", "default"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KYBERNATE_") and not k.startswith("AWS_")}
    env["KYBERNATE_IMAGE_CACHE"] = str(cache)
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def containers(node):
    return node.ctr("containers", "ls", "-q").stdout.split()


def test_cli_and_runtime_through_the_agent(build_dir, make_node, tmp_path, root):
    local, cache = tmp_path / "local", tmp_path / "cache"
    conf = tmp_path / "kybernate.json"
    assert not Path("/etc/kybernate/registry-auth.json").exists(), \
        "this machine has a registry credentials file kybernate-runc could read"
    with Registry(auth="basic", users={"alice": "s3cret"}) as reg:
        store = reg.store_uri(REPO)
        creds = auth_file(tmp_path, reg.host, "alice", "s3cret")
        node_env = {"KYBERNATE_CONFIG": str(conf), "KYBERNATE_IMAGE_CACHE": str(cache)}
        # containerd (so kybernate-runc) inherits this environment: no credentials in it.
        assert not any(k.startswith(("KYBERNATE_REGISTRY", "KYBERNATE_S3", "AWS_ACCESS",
                                     "AWS_SECRET")) for k in os.environ)
        up_env = dict(node_env, KYBERNATE_REGISTRY_AUTH=str(creds))
        write_conf(conf, local, store, tmp_path / "agent" / "agent.sock")
        with Uploader(build_dir, tmp_path / "up", env=up_env) as up:
            node = make_node("aa", start=False, env=node_env)
            agent = StandaloneAgent(build_dir, tmp_path, node, conf, up.socket, cache)
            node.start()
            agent.start()
            try:
                # (a) checkpoint through the agent, pushed by its uploader
                old_log = node.run_container(
                    "counter", ["/usr/bin/counter", "--mem", "16", "--file", "/data/state",
                                "--interval", "100", "--verify-every", "5"])
                wait_count(old_log, 8)
                r = kyb(build_dir, node, cache, "--agent", agent.socket, "--json", "checkpoint",
                        "counter", "--name", "img1", "--to", store)
                assert r.returncode == 0, r.stderr + agent.log_tail()
                out = json.loads(r.stdout)
                assert set(out) == {"container", "name", "ref", "digest", "size", "totalMs"}, out
                assert out["ref"] == f"{store}:img1" and out["name"] == "img1", out
                assert out["container"] == "counter" and out["size"] > 0
                assert out["digest"].startswith("sha256:")
                assert reg.tags(REPO) == ["img1"]
                assert not (local / "img1").exists(), "the agent's local copy stays"

                # (b) restore: the CLI and kybernate-runc both ask the agent
                new_log = node.logs_dir / "restored.log"
                before = agent.fetches()
                r = kyb(build_dir, node, cache, "--agent", agent.socket, "restore",
                        f"{store}:img1", "--name", "restored", "--log", new_log,
                        "--runc-root", node.runc_root)
                assert r.returncode == 0, r.stderr + agent.log_tail()
                cid, pid = r.stdout.split()
                assert_goes_on(old_log, new_log, int(pid), "restored", checksum_of(old_log))
                assert agent.fetches() - before == 2, agent.log_tail()

                # kybernate-runc without the agent: the registry refuses it
                write_conf(conf, local, store)
                r = kyb(build_dir, node, cache, "--agent", agent.socket, "restore",
                        f"{store}:img1", "--name", "noagent", "--runc-root", node.runc_root)
                assert r.returncode == 1, r.stdout
                assert "HTTP 401" in r.stderr, r.stderr
                assert "noagent" not in containers(node)
            finally:
                agent.stop()

            # (c) the agent down
            write_conf(conf, local, store, agent.socket)
            assert not agent.socket.exists()
            r = kyb(build_dir, node, cache, "--agent", agent.socket, "restore", f"{store}:img1",
                    "--name", "down1", "--runc-root", node.runc_root)
            assert r.returncode == 1
            assert f"kybernate-agent at {agent.socket}: no socket there" in r.stderr, r.stderr
            # The uploader fetches for the CLI; kybernate-runc then finds no agent.
            r = kyb(build_dir, node, cache, "--uploader", up.socket, "restore", f"{store}:img1",
                    "--name", "down2", "--runc-root", node.runc_root)
            assert r.returncode == 1, r.stdout
            assert "fetch through the agent" in r.stderr, r.stderr
            assert f"kybernate-agent at {agent.socket}" in r.stderr, r.stderr
            assert "is the agent running?" in r.stderr, r.stderr
            left = containers(node)
            assert "down1" not in left and "down2" not in left, left
            assert up.stop() == 0
