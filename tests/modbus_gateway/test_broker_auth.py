"""Per-gateway broker identities against the real Mosquitto of this machine: our password hash
is Mosquitto's (checked both ways with ``mosquitto_passwd``), ``noaber gateway add`` writes the
password-file and ACL entries that the broker enforces, the password is shown once and only
its hash is stored, and the action is audited."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from energy.db import make_engine, session_factory, upgrade
from energy.gateways import Gateway
from energy.models import Site
from modbus_gateway.broker_auth import (
    acl_block,
    check_mosquitto_hash,
    mosquitto_hash,
    set_acl_entry,
    set_password_entry,
)
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto
from tests.net import scaled, wait_until


def test_hash_is_mosquittos_own_format(tmp_path):
    exe = need_executable("mosquitto_passwd")
    pw = tmp_path / "pw"
    subprocess.run([exe, "-c", "-b", str(pw), "edge-1", "s3cret/+#"], check=True, timeout=10)
    theirs = pw.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$")
    assert check_mosquitto_hash("s3cret/+#", theirs)
    assert not check_mosquitto_hash("s3cret", theirs)
    ours = mosquitto_hash("abc", salt=b"0123456789ab")
    assert check_mosquitto_hash("abc", ours) and ours.count("$") == 4


def test_files_keep_other_users(tmp_path):
    pw, acl = tmp_path / "pw", tmp_path / "acl"
    set_password_entry(pw, "noaber", mosquitto_hash("c"))
    set_password_entry(pw, "gw-a", mosquitto_hash("a"))
    set_password_entry(pw, "gw-a", mosquitto_hash("a2"))  # replaced, not doubled
    lines = pw.read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["noaber", "gw-a"]
    assert check_mosquitto_hash("a2", lines[1].split(":", 1)[1])
    set_acl_entry(acl, "gw-a", acl_block("gw-a"))
    set_acl_entry(acl, "gw-b", acl_block("gw-b"))
    set_acl_entry(acl, "gw-a", acl_block("gw-a", "again"))
    body = acl.read_text()
    assert body.count("user gw-a") == 1 and body.count("user noaber") == 1
    assert "topic write noaber/gw-b/samples" in body and "topic read noaber/gw-b/ack" in body
    assert "topic read noaber/+/samples" in body  # the centre's block


def _connect(port: int, user: str, password: str) -> tuple[mqtt.Client, str]:
    got: dict[str, str] = {}
    ev = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.time_ns()}")
    c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc, props):
        got["rc"] = str(rc)
        ev.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    ev.wait(scaled(10))
    return c, got.get("rc", "no answer")


def test_gateway_add_creates_an_identity_the_broker_enforces(tmp_path, monkeypatch):
    monkeypatch.setenv("NOABER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NOABER_MODE", "local")
    monkeypatch.delenv("NOABER_DATABASE_URL", raising=False)
    monkeypatch.setenv("NOABER_AS", "operator-7")
    url = f"sqlite:///{tmp_path / 'data' / 'noaber.db'}"
    (tmp_path / "data").mkdir()
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        for n in ("site-a", "site-b"):
            s.add(
                Site(
                    name=n,
                    display_name=n,
                    ean=f"87168590000000000{len(n) % 9}" if n == "site-a" else "871685900000000029",
                    latitude=52.9,
                    longitude=6.6,
                    grid_import_limit_kw=40,
                    grid_export_limit_kw=25,
                )
            )
    from energy.settings import get_settings
    from noaber.cli import app

    get_settings.cache_clear()
    pw, acl = tmp_path / "mqtt" / "passwords", tmp_path / "mqtt" / "acl"
    set_password_entry(pw, "noaber", mosquitto_hash("centre-pw"))
    args = ["--password-file", str(pw), "--acl-file", str(acl)]
    runner = CliRunner()
    res = runner.invoke(app, ["gateway", "add", "gw-a", "--site", "site-a", *args])
    assert res.exit_code == 0, res.output
    password = next(
        ln.split(":", 2)[2].split("@")[0] for ln in res.output.splitlines() if "mqtt://gw-a:" in ln
    )
    assert len(password) >= 40
    res_b = runner.invoke(app, ["gateway", "add", "gw-b", "--site", "site-b", *args])
    assert res_b.exit_code == 0, res_b.output
    password_b = next(
        ln.split(":", 2)[2].split("@")[0]
        for ln in res_b.output.splitlines()
        if "mqtt://gw-b:" in ln
    )
    again = runner.invoke(app, ["gateway", "add", "gw-a", "--site", "site-a", *args])
    assert again.exit_code == 1 and "exists already" in str(again.exception)
    nosite = runner.invoke(app, ["gateway", "add", "gw-c", "--site", "site-x", *args])
    assert nosite.exit_code == 1 and "no site 'site-x'" in str(nosite.exception)
    listing = runner.invoke(app, ["gateway", "list"])
    assert "gw-a" in listing.output and "site-b" in listing.output

    # only the hash is stored, nowhere the password
    with engine.connect() as c:
        dump = " ".join(
            str(v)
            for t in ("gateways", "audit_log")
            for row in c.execute(text(f"select * from {t}"))
            for v in row
        )
    assert password not in dump and password not in pw.read_text()
    with session_factory(engine)() as s:
        gw = s.scalar(select(Gateway).where(Gateway.name == "gw-a"))
        assert gw is not None and check_mosquitto_hash(password, gw.password_hash)
        assert [x.site.name for x in gw.sites] == ["site-a"]
    audit = runner.invoke(app, ["audit", "list", "--action", "gateway.add"])
    assert "operator-7" in audit.output and "gw-a" in audit.output
    engine.dispose()

    # the broker takes the files as written
    broker = Mosquitto(
        need_executable("mosquitto"),
        tmp_path,
        f"allow_anonymous false\npassword_file {pw}\nacl_file {acl}\n",
    )
    broker.start()
    assert broker.port is not None
    try:
        _, rc = _connect(broker.port, "gw-a", "wrong")
        assert "Not authorized" in rc or "Bad user name or password" in rc, rc
        centre, rc = _connect(broker.port, "noaber", "centre-pw")
        assert rc == "Success", rc
        seen: list[str] = []
        centre.on_message = lambda c, u, m: seen.append(m.topic)
        centre.subscribe("noaber/+/samples", qos=1)
        gw_a, rc = _connect(broker.port, "gw-a", password)
        assert rc == "Success", rc
        gw_b, rc = _connect(broker.port, "gw-b", password_b)
        assert rc == "Success", rc
        time.sleep(0.3)  # the SUBACK (the centre's subscription is in place)
        gw_a.publish("noaber/gw-b/samples", b"forged", qos=1).wait_for_publish(5)
        gw_a.publish("noaber/gw-a/samples", b"own", qos=1).wait_for_publish(5)
        gw_b.publish("noaber/gw-b/samples", b"own-b", qos=1).wait_for_publish(5)
        wait_until(lambda: len(seen) >= 2, "the gateways' own batches at the centre")
        time.sleep(0.3)
        assert sorted(seen) == ["noaber/gw-a/samples", "noaber/gw-b/samples"]  # no forgery
        for c in (centre, gw_a, gw_b):
            c.loop_stop()
            c.disconnect()
    finally:
        broker.stop()


@pytest.mark.parametrize("name", ["a/b", "+", "Noaber", "noaber", "x" * 64, "-x"])
def test_gateway_names_that_cannot_be_a_topic_level_or_user(name):
    from energy.errors import NoaberError
    from energy.gateways import check_gateway_name

    with pytest.raises(NoaberError, match="gateway name"):
        check_gateway_name(name)


def _sites_db(tmp_path, monkeypatch) -> None:
    """A local SQLite database with sites site-a and site-b, for ``noaber gateway add``."""
    from energy.settings import get_settings

    monkeypatch.setenv("NOABER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NOABER_MODE", "local")
    monkeypatch.delenv("NOABER_DATABASE_URL", raising=False)
    (tmp_path / "data").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'noaber.db'}")
    upgrade(engine)
    with session_factory(engine).begin() as s:
        for n, ean in (("site-a", "871685900000000005"), ("site-b", "871685900000000029")):
            s.add(Site(name=n, display_name=n, ean=ean, latitude=52.9, longitude=6.6,
                       grid_import_limit_kw=40, grid_export_limit_kw=25))  # fmt: skip
    engine.dispose()
    get_settings.cache_clear()


def _password_of(output: str, name: str) -> str:
    return next(
        ln.split(":", 2)[2].split("@")[0] for ln in output.splitlines() if f"mqtt://{name}:" in ln
    )


def test_gateway_add_reloads_the_running_broker(tmp_path, monkeypatch):
    """``noaber gateway add --mosquitto-pid-file`` sends the running broker SIGHUP: the new
    gateway connects (and publishes on its topic) without a restart. Without the reload the
    broker still refuses it (Mosquitto reads its files only at start and on SIGHUP); a stale
    or missing pid file is a clear error after the gateway was added, and signals nothing."""
    from modbus_gateway.broker_auth import centre_acl_block
    from noaber.cli import app
    from tests.net import pick_port, wait_for_tcp

    _sites_db(tmp_path, monkeypatch)
    mq = tmp_path / "mqtt"
    pw, acl, pid_file = mq / "passwords", mq / "acl", mq / "mosquitto.pid"
    set_password_entry(pw, "noaber", mosquitto_hash("centre-pw"))
    acl.write_text("\n".join(centre_acl_block()) + "\n", encoding="utf-8")
    port = pick_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n"
        f"acl_file {acl}\npid_file {pid_file}\nlog_dest file {tmp_path / 'mosquitto.log'}\n"
        + ("user root\n" if os.geteuid() == 0 else ""),
        encoding="utf-8",
    )
    # as an init script runs it: a daemon (-d) that writes its pid file
    subprocess.run([need_executable("mosquitto"), "-d", "-c", str(conf)], check=True, timeout=30)
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), "the pid file")
    broker_pid = int(pid_file.read_text())
    runner = CliRunner()
    files = ["--password-file", str(pw), "--acl-file", str(acl)]
    clients: list[mqtt.Client] = []
    try:
        wait_for_tcp(port)
        # added without a reload: written, but the running broker does not know it yet
        res = runner.invoke(app, ["gateway", "add", "gw-b", "--site", "site-b", *files])
        assert res.exit_code == 0, res.output
        assert "reload Mosquitto" in " ".join(res.output.split())
        pw_b = _password_of(res.output, "gw-b")
        c, rc = _connect(port, "gw-b", pw_b)
        clients.append(c)
        assert "Not authorized" in rc or "Bad user name or password" in rc, rc

        centre, rc = _connect(port, "noaber", "centre-pw")
        clients.append(centre)
        assert rc == "Success", rc
        seen: list[tuple[str, bytes]] = []
        subscribed = threading.Event()
        centre.on_message = lambda cl, u, m: seen.append((m.topic, m.payload))
        centre.on_subscribe = lambda *a: subscribed.set()
        centre.subscribe("noaber/+/samples", qos=1)
        assert subscribed.wait(scaled(10))

        res = runner.invoke(
            app,
            ["gateway", "add", "gw-a", "--site", "site-a", *files,
             "--mosquitto-pid-file", str(pid_file)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert f"Mosquitto (pid {broker_pid}) told to reload" in " ".join(res.output.split())
        pw_a = _password_of(res.output, "gw-a")
        got: dict[str, str] = {}

        def connects() -> bool:  # the broker reloads asynchronously: bounded retries
            cl, got["rc"] = _connect(port, "gw-a", pw_a)
            clients.append(cl)
            return got["rc"] == "Success"

        wait_until(connects, "gw-a accepted by the running broker after the reload")
        gw_a = clients[-1]
        gw_a.publish("noaber/gw-b/samples", b"forged", qos=1).wait_for_publish(scaled(5))
        gw_a.publish("noaber/gw-a/samples", b"own", qos=1).wait_for_publish(scaled(5))
        wait_until(lambda: seen, "gw-a's batch at the centre")
        # the same reload took gw-b's entries too; the broker never restarted
        c, rc = _connect(port, "gw-b", pw_b)
        clients.append(c)
        assert rc == "Success", rc
        assert int(pid_file.read_text()) == broker_pid
        assert seen == [("noaber/gw-a/samples", b"own")]  # the ACL of the reload holds
        assert "Reloading config" in (tmp_path / "mosquitto.log").read_text()

        # a stale pid file (another program's pid) and a missing one: clear errors, no signal
        other = subprocess.Popen(["sleep", "30"])
        try:
            stale = tmp_path / "stale.pid"
            stale.write_text(f"{other.pid}\n")
            res = runner.invoke(
                app,
                ["gateway", "add", "gw-c", "--site", "site-a", *files,
                 "--mosquitto-pid-file", str(stale)],
            )  # fmt: skip
            assert res.exit_code == 1
            msg = str(res.exception)
            assert "gateway gw-c is added" in msg and "not mosquitto" in msg, msg
            assert other.poll() is None  # not signalled (SIGHUP would have ended it)
        finally:
            other.kill()
            other.wait(10)
        res = runner.invoke(
            app,
            ["gateway", "add", "gw-d", "--site", "site-b", *files,
             "--mosquitto-pid-file", str(tmp_path / "none.pid")],
        )  # fmt: skip
        assert res.exit_code == 1 and "none.pid" in str(res.exception), res.output
    finally:
        for cl in clients:
            cl.loop_stop()
            cl.disconnect()
        os.kill(broker_pid, signal.SIGTERM)  # the daemon this test started, by its pid
