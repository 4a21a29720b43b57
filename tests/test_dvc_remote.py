"""A dvc-s3 remote round trip against a real S3-compatible server (moto) on 127.0.0.1.

A throwaway DVC project runs a one-stage pipeline, pushes its outputs to the bucket, loses its cache
and workspace copies, pulls them back, and checks every file against the hashes in dvc.lock.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
pytest.importorskip("dvc_s3")
boto3 = pytest.importorskip("boto3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _sh(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_push_wipe_pull_roundtrip(tmp_path, s3_server):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="vlmcot")
    proj = tmp_path / "proj"
    proj.mkdir()
    dvc = str(BIN / "dvc")
    _sh(["git", "init", "-q"], proj, env)
    _sh([dvc, "init", "-q"], proj, env)
    _sh([dvc, "config", "core.analytics", "false"], proj, env)
    _sh([dvc, "remote", "add", "-d", "store", "s3://vlmcot/cache"], proj, env)
    _sh([dvc, "remote", "modify", "store", "endpointurl", s3_server], proj, env)
    # credentials go to .dvc/config.local (never committed), as the README tells users to do
    _sh([dvc, "remote", "modify", "--local", "store", "access_key_id", "testing"], proj, env)
    _sh([dvc, "remote", "modify", "--local", "store", "secret_access_key", "testing"], proj, env)
    make = ("import os, random; os.makedirs('out/images', exist_ok=True); r = random.Random(0)\n"
            "open('out/records.jsonl', 'w').write(''.join('{\"id\": %d}\\n' % i for i in range(100)))\n"
            "[open(f'out/images/{i}.bin', 'wb').write(r.randbytes(2048)) for i in range(5)]\n"
            "open('model.bin', 'wb').write(r.randbytes(4096))\n")
    (proj / "make.py").write_text(make)
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"produce": {
        "cmd": "python make.py", "deps": ["make.py"], "outs": ["out", "model.bin"]}}}))
    _sh([dvc, "repro", "-q"], proj, env)
    before = {str(p.relative_to(proj)): _md5(p) for p in sorted(proj.glob("out/**/*")) if p.is_file()}
    before["model.bin"] = _md5(proj / "model.bin")

    _sh([dvc, "push"], proj, env)
    shutil.rmtree(proj / ".dvc" / "cache")
    shutil.rmtree(proj / "out")
    (proj / "model.bin").unlink()
    _sh([dvc, "pull"], proj, env)

    after = {str(p.relative_to(proj)): _md5(p) for p in sorted(proj.glob("out/**/*")) if p.is_file()}
    after["model.bin"] = _md5(proj / "model.bin")
    assert after == before and len(after) == 7
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for o in lock["stages"]["produce"]["outs"]}
    assert outs["model.bin"] == before["model.bin"]
    assert "no changes" in _sh([dvc, "status"], proj, env).lower() or \
        "up to date" in _sh([dvc, "status"], proj, env).lower()
    # the secret stayed out of the committed config
    assert "testing" not in (proj / ".dvc" / "config").read_text()
