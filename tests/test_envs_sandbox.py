"""The sandbox and process runner: environment and home kept out, limits, no survivors."""

from __future__ import annotations

import asyncio
import os

import pytest
from env_contract import processes_with
from waiting import eventually

from slime_openclaw.envs import sandbox as sandbox_module
from slime_openclaw.envs.process import run_process
from slime_openclaw.envs.sandbox import Limits, Sandbox, bwrap_works, resolve_isolation
from slime_openclaw.errors import ConfigError

MODES = [pytest.param("bwrap", marks=pytest.mark.skipif(not bwrap_works(), reason="bubblewrap unusable here")),
         "plain"]


@pytest.fixture(params=MODES)
async def box(request, monkeypatch):
    monkeypatch.setenv("ENVS_TEST_SECRET_VAR", "leak-me")
    sandbox = Sandbox(isolation=request.param, limits=Limits(timeout=2, max_output=300, memory_mb=256))
    yield sandbox
    await sandbox.close()
    assert not sandbox.host_workspace.exists()


async def test_environment_and_home_are_kept_out(box):
    result = await box.run("env; echo home=$HOME; ls ~ /root 2>&1")
    assert "leak-me" not in result.output and f"home={box.workdir}" in result.output
    assert result.exit_code != 0  # /root is not reachable


async def test_memory_limit_and_exit_codes(box):
    result = await box.run("python3 -c 'b = bytearray(600 * 2**20)'")
    assert result.exit_code == 1 and "MemoryError" in result.output
    assert (await box.run("exit 7")).exit_code == 7


async def test_processes_that_leave_the_group_do_not_survive(box):
    token = f"{os.getpid()}.{id(box) % 1000}"
    result = await box.run(f"(setsid sleep {token} &); nohup sleep {token} >/dev/null 2>&1 & echo started")
    assert result.exit_code == 0 and not result.timed_out and result.seconds < 2
    # bwrap: the killed namespace's members die asynchronously, within moments
    await eventually(lambda: processes_with(f"sleep {token}") == [], "the sleeps are gone", timeout_s=5)


async def test_a_cancelled_run_kills_its_command(box):
    token = f"{os.getpid()}.{id(box) % 1000 + 1000}"
    running = asyncio.ensure_future(box.run(f"sleep {token}", timeout=30))
    await eventually(lambda: processes_with(f"sleep {token}") != [], "the sleep started", timeout_s=5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await eventually(lambda: processes_with(f"sleep {token}") == [], "the sleeps are gone", timeout_s=5)


async def test_write_file_stays_in_the_workspace(box):
    await box.write_file("dir/it's here.txt", "a'b\n")
    assert (box.host_workspace / "dir" / "it's here.txt").read_text() == "a'b\n"
    # refused (plain: nobody may not write there) or into the run's own throwaway root (bwrap)
    await box.write_file("/etc/envs-test-evil.txt", "x")
    await box.write_file("../escape.txt", "x")
    assert not os.path.exists("/etc/envs-test-evil.txt")
    assert not (box.host_workspace.parent / "escape.txt").exists()


async def test_clone_is_independent(box):
    await box.write_file("a.txt", "1")
    twin = box.clone()
    try:
        await twin.run("echo 2 > a.txt; touch b.txt")
        assert (await twin.run("cat a.txt")).output == "2\n"
    finally:
        await twin.close()
    assert (box.host_workspace / "a.txt").read_text() == "1" and not (box.host_workspace / "b.txt").exists()


async def test_run_after_close_is_refused(box):
    await box.close()
    await box.close()
    with pytest.raises(RuntimeError, match="closed"):
        await box.run("true")


async def test_run_process_truncates_head_and_tail(tmp_path):
    result = await run_process(["bash", "-c", "echo START; seq 1 20000; echo END"], cwd=str(tmp_path), env={},
                               timeout=5, max_output=100, flood_limit=10**7)
    assert result.output.startswith("START") and result.output.rstrip().endswith("END")
    assert result.truncated and "bytes of output truncated" in result.output


def test_isolation_choice(monkeypatch):
    with pytest.raises(ConfigError, match="expected one of auto, bwrap, plain"):
        resolve_isolation("docker")
    monkeypatch.setattr(sandbox_module, "bwrap_works", lambda: False)
    assert resolve_isolation("auto") == "plain"
    with pytest.raises(ConfigError, match="bubblewrap is missing"):
        resolve_isolation("bwrap")
