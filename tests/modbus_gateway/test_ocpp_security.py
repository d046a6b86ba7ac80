"""OCPP security profiles (OCPP 2.0.1 part 2 A00, the OCPP 1.6 security whitepaper) against
the charge-point simulator on loopback: 1, Basic auth on the websocket upgrade (the right
password accepted, a wrong one, none, or another charger's name refused with 401); 2, the
same over TLS with a test CA made here (a charger that does not trust it cannot connect, one
on plain ws:// neither); 3, TLS client certificates whose common name is the charge point id.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.headers import build_authorization_basic

from energy.errors import NoaberError, ValidationError
from energy.security import hash_password
from modbus_gateway.ocpp.central import CentralSystem
from modbus_gateway.ocpp.config import parse_ocpp_section
from modbus_gateway.ocpp.sim import SimulatedCharger
from tests.modbus_gateway.tls import make_certs, make_client_cert
from tests.net import scaled

PASSWORD = "Zon0p-Het-Dak!2026"  # 18 characters
TOKEN = "04A1B2C3D4"


def _config(profile: int, tls: dict | None = None, **cp):
    base = {
        "id": "CP-1",
        "ocpp_version": "2.0.1",
        "asset": "ev-1",
        "max_power_w": 11000,
        "fallback_power_w": 4140,
    }
    if profile in (1, 2):
        base["password_hash"] = hash_password(PASSWORD)
    base.update(cp)
    section: dict = {"id_tokens": [TOKEN], "charge_points": [base], "security_profile": profile}
    if tls is not None:
        section["tls"] = tls
    return parse_ocpp_section(section, "site.yaml")


@contextlib.asynccontextmanager
async def central(config, tls_base: Path | None = None):
    cs = CentralSystem(config, lambda samples: None)
    port = await cs.start("127.0.0.1", 0, tls_base)
    try:
        yield cs, port
    finally:
        await cs.stop()


async def _boot(url: str, **kw) -> SimulatedCharger:
    """A simulated CP-1 until its boot answer (raises what the connection raised)."""
    sim = SimulatedCharger(url, "CP-1", "2.0.1", TOKEN, meter_interval_s=0.05, **kw)
    task = asyncio.create_task(sim.run())
    booted = asyncio.create_task(sim.booted.wait())
    await asyncio.wait([task, booted], timeout=scaled(10), return_when=asyncio.FIRST_COMPLETED)
    booted.cancel()
    sim.stop()
    await asyncio.wait_for(task, scaled(10))
    if not sim.booted.is_set():
        raise AssertionError("no boot answer")
    return sim


def _client_ctx(ca: Path | None, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


async def test_profile_1_basic_auth_right_password_accepted_else_401():
    async with central(_config(1)) as (cs, port):
        url = f"ws://127.0.0.1:{port}"
        sim = await _boot(url, password=PASSWORD)
        assert sim.boot_status == "Accepted"
        with pytest.raises(InvalidStatus) as err:
            await _boot(url, password=PASSWORD + "x")
        assert err.value.response.status_code == 401
        assert err.value.response.headers["WWW-Authenticate"].startswith("Basic")
        with pytest.raises(InvalidStatus) as err:
            await _boot(url)  # no credentials
        assert err.value.response.status_code == 401
        # the right password under another charger's name: refused (the username is the id)
        auth = build_authorization_basic("CP-2", PASSWORD)
        with pytest.raises(InvalidStatus) as err:
            async with connect(
                f"{url}/CP-1",
                subprotocols=["ocpp2.0.1"],
                additional_headers={"Authorization": auth},
            ):
                pass
        assert err.value.response.status_code == 401
        assert [why for _, why in cs.refused_connections] == [
            "wrong password",
            "no credentials (Basic auth required)",
            "username 'CP-2' is not the charge point id of the URL",
        ]


async def test_profile_2_tls_with_a_test_ca_and_basic_auth(tmp_path):
    certs = make_certs(tmp_path / "pki")
    tls = {"cert_file": "pki/server.crt", "key_file": "pki/server.key"}  # relative to the site
    async with central(_config(2, tls), tls_base=tmp_path) as (cs, port):
        url = f"wss://127.0.0.1:{port}"
        sim = await _boot(url, password=PASSWORD, ssl_context=_client_ctx(certs.ca))
        assert sim.boot_status == "Accepted"
        with pytest.raises(InvalidStatus) as err:
            await _boot(url, password="not-the-password-1", ssl_context=_client_ctx(certs.ca))
        assert err.value.response.status_code == 401
        # a charger that does not trust the CA stops at the handshake
        with pytest.raises(ssl.SSLCertVerificationError):
            await _boot(url, password=PASSWORD, ssl_context=_client_ctx(None))
        # plain websocket to the TLS port: no upgrade at all
        with pytest.raises(Exception) as plain:
            await _boot(f"ws://127.0.0.1:{port}", password=PASSWORD)
        assert not isinstance(plain.value, AssertionError)
        assert [why for _, why in cs.refused_connections] == ["wrong password"]


async def test_profile_3_client_certificate_names_the_charger(tmp_path):
    certs = make_certs(tmp_path / "pki")
    good = make_client_cert(certs, "CP-1", tmp_path / "cp1")
    other = make_client_cert(certs, "CP-2", tmp_path / "cp2")
    tls = {
        "cert_file": str(certs.cert),
        "key_file": str(certs.key),
        "client_ca_file": str(certs.ca),
    }
    async with central(_config(3, tls)) as (cs, port):
        url = f"wss://127.0.0.1:{port}"
        sim = await _boot(url, ssl_context=_client_ctx(certs.ca, good))
        assert sim.boot_status == "Accepted"
        with pytest.raises(InvalidStatus) as err:  # CP-2's certificate at CP-1's URL
            await _boot(url, ssl_context=_client_ctx(certs.ca, other))
        assert err.value.response.status_code == 401
        assert cs.refused_connections == [
            ("CP-1", "client certificate common name CP-2 is not 'CP-1'")
        ]
        # no certificate at all: the server ends the TLS session (with TLS 1.3 the client
        # sees it as the HTTP answer that never comes)
        with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
            await _boot(url, ssl_context=_client_ctx(certs.ca))
        assert len(cs.refused_connections) == 1 and not cs.chargers["CP-1"].boots > 1


def test_profiles_need_their_secrets_and_files_named(tmp_path):
    with pytest.raises(ValidationError) as err:
        _config(1, password_hash=None)
    assert err.value.location == "ocpp.charge_points[0].password_hash"
    with pytest.raises(ValidationError) as err:
        _config(1, password_hash="plain-text-password")  # never a password in clear
    assert err.value.location == "ocpp.charge_points[0].password_hash"
    with pytest.raises(ValidationError) as err:
        _config(2)
    assert err.value.location == "ocpp.tls" and "cert_file" in str(err.value)
    with pytest.raises(ValidationError) as err:
        _config(3, {"cert_file": "a", "key_file": "b"})
    assert err.value.location == "ocpp.tls" and "client_ca_file" in str(err.value)

    async def start_missing() -> None:
        async with central(_config(2, {"cert_file": "no.crt", "key_file": "no.key"}), tmp_path):
            pass

    with pytest.raises(NoaberError, match=r"cert_file .*no\.crt"):
        asyncio.run(start_missing())
