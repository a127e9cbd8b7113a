"""Nobody let in: JSON only (a pickled message is refused, a worker configured for pickle does not
start), Redis over TLS with a password that never shows in logs, manifest or report, SQL
identifiers only from the catalog, and run ids that cannot leave the runs folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import redis
from conftest import python_path, run_worker_with_app
from kombu import Connection, Exchange, Producer
from test_faults import assert_each_pair_once, start_run

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.celery.config import celery_config, check_safe_content
from bqx_queue.celery.embedded_redis import free_port, redis_server_binary
from bqx_queue.config import load_settings, redact_url
from bqx_queue.domain.errors import BqxError, ConfigError, WarehouseError
from bqx_queue.runner.processes import stop_process
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.sql import plan_pair

PASSWORD = "s3cr3t-Pa55word-xyzzy"


# JSON only --------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a file: what an attacker on a shared broker would send."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.integration
def test_worker_refuses_a_pickled_message(queue_env, start_worker, tmp_path):
    worker = start_worker("json", concurrency=1)
    marker = tmp_path / "pwned"
    with Connection(queue_env["BQX_BROKER_URL"]) as connection:
        producer = Producer(connection.channel(), exchange=Exchange("celery", type="direct"), routing_key="celery")
        producer.publish(
            {"args": [_Payload(marker)], "kwargs": {}},
            serializer="pickle",
            headers={
                "task": "bqx.process_pair",
                "id": "evil-1",
                "lang": "py",
                "argsrepr": "",
                "kwargsrepr": "",
            },
        )
    deadline = time.monotonic() + 15
    while "Refusing to deserialize" not in worker.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Refusing to deserialize untrusted content of type pickle" in worker.log.read_text()
    assert not marker.exists()
    assert worker.process.poll() is None  # still serving


@pytest.mark.integration
def test_worker_configured_for_pickle_does_not_start(queue_env, tmp_path):
    started = time.monotonic()
    worker = run_worker_with_app(
        "from bqx_queue.celery.application import app\napp.conf.accept_content = ['pickle', 'json']\n",
        queue_env,
        tmp_path,
    )
    assert worker.returncode == 2
    assert time.monotonic() - started < 30
    assert worker.stderr.strip() == (
        "error: accept_content is ['pickle', 'json']: only json is allowed (pickle from a broker runs code)"
    )


@pytest.mark.integration
def test_a_config_module_cannot_switch_on_pickle(tmp_path):
    # `celery -A bqx_queue --config picklecfg worker` loads such a module; bqx's settings win
    (tmp_path / "picklecfg.py").write_text("accept_content = ['pickle']\ntask_serializer = 'pickle'\n")
    probe = (
        "from bqx_queue.celery.application import app\n"
        "from bqx_queue.celery.config import check_worker_config\n"
        "app.config_from_object('picklecfg')\n"
        "check_worker_config(app.conf)\n"
        "print(app.conf.accept_content, app.conf.task_serializer)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=os.environ | {"PYTHONPATH": python_path(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['json'] json"


@pytest.mark.unit
@pytest.mark.parametrize(
    "override",
    [
        {"task_serializer": "pickle"},
        {"result_serializer": "yaml"},
        {"accept_content": ["application/x-python-serialize"]},
        {"result_accept_content": ["json", "pickle"]},
    ],
)
def test_any_serializer_but_json_is_refused(override):
    conf = celery_config(load_settings()) | override
    with pytest.raises(ConfigError, match="only json is allowed"):
        check_safe_content(conf)


# TLS and passwords ------------------------------------------------------------------------


@pytest.fixture()
def tls_redis(tmp_path: Path):
    """A redis-server speaking only TLS, with a password; yields (url, ca file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path / "tls"
    folder.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(folder / "cert.pem"),
            "--tls-key-file",
            str(folder / "key.pem"),
            "--tls-ca-cert-file",
            str(folder / "cert.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ca = folder / "cert.pem"
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}"
    client = redis.Redis.from_url(f"{url}/0", ssl_cert_reqs="required", ssl_ca_certs=str(ca), socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except (redis.ConnectionError, OSError):
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.skip("this redis-server does not speak TLS")
            time.sleep(0.1)
    yield url, ca
    stop_process(server)


@pytest.mark.e2e
def test_run_over_tls_with_a_password_never_prints_it(queue_env, small_warehouse, start_worker, tls_redis, tmp_path):
    url, ca = tls_redis
    query = f"?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    env = queue_env | {"BQX_BROKER_URL": f"{url}/0{query}", "BQX_RESULT_BACKEND": f"{url}/1{query}"}
    worker = start_worker(
        "tls",
        concurrency=1,
        BQX_BROKER_URL=env["BQX_BROKER_URL"],
        BQX_RESULT_BACKEND=env["BQX_RESULT_BACKEND"],
    )
    producer = start_run(env, small_warehouse, "eurusd,gbpusd", "over-tls")
    out, err = producer.communicate(timeout=90)
    assert producer.returncode == 0, err
    assert "rediss://:***@127.0.0.1" in err  # the producer names its broker, without the password
    assert_each_pair_once(queue_env, "over-tls", ["eurusd", "gbpusd"])
    texts = {"producer": out + err, "worker log": worker.log.read_text()}
    for path in (Path(queue_env["BQX_RUNS_DIR"]) / "over-tls").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert len(texts) > 5
    leaks = [name for name, text in texts.items() if PASSWORD in text]
    assert not leaks, leaks


@pytest.mark.integration
def test_rediss_without_a_ca_is_verified_and_refused(tls_redis):
    from bqx_queue.celery.producer import check_broker
    from bqx_queue.domain.errors import BrokerError

    url, _ = tls_redis
    started = time.monotonic()
    with pytest.raises(BrokerError) as refused:
        check_broker(f"{url}/0")  # self-signed certificate, no CA given: verification must fail
    assert time.monotonic() - started < 10
    assert PASSWORD not in str(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.unit
def test_redaction_of_broker_urls():
    assert redact_url(f"rediss://user:{PASSWORD}@host:6380/0?ssl_cert_reqs=required") == (
        "rediss://user:***@host:6380/0?ssl_cert_reqs=required"
    )
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


@pytest.mark.integration
def test_manifest_carries_no_broker_url(queue_env, small_warehouse, monkeypatch, tmp_path):
    from bqx_queue.runner.run import plan_run

    monkeypatch.setenv("BQX_BROKER_URL", f"redis://:{PASSWORD}@127.0.0.1:1/0")
    monkeypatch.setenv("BQX_RESULT_BACKEND", f"redis://:{PASSWORD}@127.0.0.1:1/1")
    manifest = plan_run(load_settings(warehouse=small_warehouse), ["eurusd"])
    assert PASSWORD not in repr(manifest)


# SQL identifiers --------------------------------------------------------------------------

INJECTIONS = [
    "eurusd`; DROP TABLE bqx_analytics.targets_eurusd; --",
    'eurusd"; DROP TABLE x; --',
    "eurusd' OR '1'='1",
    "eurusd UNION SELECT 1",
]


def _table_count(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return int(con.execute("SELECT count(*) FROM information_schema.tables").fetchone()[0])


@pytest.mark.integration
@pytest.mark.parametrize("pair", INJECTIONS)
def test_injection_through_a_pair_name_is_refused(pair, small_warehouse, capsys, monkeypatch, tmp_path):
    from bqx_queue.cli import enqueue_main

    tables = _table_count(small_warehouse)
    monkeypatch.setenv("BQX_RUNS_DIR", str(tmp_path / "runs"))
    assert enqueue_main(["--pairs", pair, "--warehouse", str(small_warehouse)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown pair or group")
    # and below the CLI, the planner itself refuses a pair that is not a plain identifier
    settings = load_settings(warehouse=small_warehouse)
    with pytest.raises(WarehouseError) as refused:
        plan_pair(pair, open_source(settings).catalog(), settings)
    assert_refused_identifier(refused.value, f"targets_{pair}")
    assert _table_count(small_warehouse) == tables
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    "setting, pattern",
    [
        ("pair_table_pattern", "{pair}`; DROP TABLE bqx_analytics.targets_eurusd; --"),
        ("pair_table_pattern", '{pair}" OR 1=1 --'),
        ("targets_table", "targets_{pair}`; DROP TABLE bqx_features.reg_eurusd; --"),
        ("targets_table", "targets_{pair} UNION SELECT * FROM bqx_meta.manifest"),
    ],
)
def test_injection_through_a_table_pattern_is_refused(setting, pattern, small_warehouse):
    tables = _table_count(small_warehouse)
    settings = load_settings(warehouse=small_warehouse, **{setting: pattern})
    with pytest.raises(WarehouseError) as refused:
        plan_pair("eurusd", open_source(settings).catalog(), settings)
    assert_refused_identifier(refused.value, pattern.format(pair="eurusd"))
    assert _table_count(small_warehouse) == tables


def assert_refused_identifier(error: WarehouseError, name: str) -> None:
    """The identifier check refused exactly this name (not a lookup that found no such table)."""
    assert str(error) == f"refusing identifier {name!r}: only letters, digits and _ are allowed"


@pytest.mark.integration
def test_sampled_days_are_parameters_not_sql_text(small_warehouse):
    settings = load_settings(warehouse=small_warehouse)
    plan = plan_pair("eurusd", open_source(settings).catalog(), settings)
    assert "@days" in plan.sql
    assert "2020-" not in plan.sql


@pytest.mark.unit
def test_a_parquet_file_named_like_an_injection_is_refused(tmp_path):
    folder = tmp_path / "export" / "bqx_features"
    folder.mkdir(parents=True)
    with duckdb.connect() as con:
        evil = folder / 'reg_eurusd"; DROP TABLE x; --.parquet'
        con.execute(f"COPY (SELECT TIMESTAMP '2020-01-02' AS interval_time, 1.0 AS x) TO '{evil}' (FORMAT parquet)")
    settings = load_settings(warehouse=tmp_path / "export")
    with pytest.raises(WarehouseError, match="refusing identifier"):
        open_source(settings).catalog()


@pytest.mark.unit
@pytest.mark.parametrize("run_id", ["../outside", "a/b", "/etc", "..", ".hidden", "x" * 200, "run id", "run\n"])
def test_run_ids_cannot_leave_the_runs_folder(run_id, tmp_path):
    with pytest.raises(BqxError, match="is not allowed"):
        RunStore(tmp_path, run_id)
