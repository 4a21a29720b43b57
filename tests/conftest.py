"""Shared test setup: offline, single-threaded, and MLflow pointed at a throwaway store."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@pytest.fixture(scope="session", autouse=True)
def _mlflow_store(tmp_path_factory):
    # One sqlite store per session: creating one costs seconds (schema migrations).
    d = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{d}/mlflow.db"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "vlmcot-tests"
    yield d


class FakeTracker:
    """Stands in for vlmcot.tracking.StageRun in unit tests of stage run() functions."""

    def __init__(self):
        self.metrics: dict = {}
        self.artifacts: list = []

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(str(path))

    def log_text(self, text, name):
        self.artifacts.append(name)

    def set_tags(self, tags):
        pass


@pytest.fixture
def tracker():
    return FakeTracker()



# torch.distributed's rendezvous variables. A test that leaves them in this process's environment makes
# every later subprocess (they inherit it) join a one-rank world on a port that is no longer free:
# EADDRINUSE in CI, failing tests far from the cause. So a test that leaks them fails, by name.
_DIST = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _no_distributed_env_leak(request):
    before = {k: os.environ.get(k) for k in _DIST}
    yield
    after = {k: os.environ.get(k) for k in _DIST}
    if after != before:
        for k, v in before.items():  # restore first, so one leak fails one test, not the rest
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        pytest.fail(f"{request.node.nodeid} left torch.distributed variables in os.environ: "
                    f"{ {k: v for k, v in after.items() if v != before[k]} }")
