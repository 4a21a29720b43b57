"""`train.deepspeed` in one process (launch.num_processes: 1, no launcher): the one-rank world is set up,
so DeepSpeed does not fall back to MPI discovery ("No module named 'mpi4py'"); a launcher's env wins."""

import os

from vlmcot.training.common import single_process_env

KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _clear(monkeypatch):
    # setenv first: monkeypatch.delenv of an absent key records nothing, so what single_process_env then
    # sets would outlive the test (and every later subprocess would inherit a one-rank world)
    for k in KEYS:
        monkeypatch.setenv(k, "x")
        monkeypatch.delenv(k)


def test_one_rank_world_outside_a_launcher(monkeypatch):
    _clear(monkeypatch)
    single_process_env()
    assert [os.environ[k] for k in KEYS[:5]] == ["0", "0", "1", "1", "127.0.0.1"]
    assert 0 < int(os.environ["MASTER_PORT"]) < 65536


def test_a_launchers_env_is_left_alone(monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    single_process_env()
    assert os.environ["RANK"] == "3" and os.environ["WORLD_SIZE"] == "8" and "MASTER_PORT" not in os.environ
