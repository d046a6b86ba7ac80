"""Gateway benchmark: 20 simulated devices x 60 registers, polled every 1 s on loopback.

    python bench/gateway_bench.py            # 60 s coalesced + 15 s naive baseline
    python bench/gateway_bench.py --quick    # ~5 s smoke version

The simulators run in a separate process, so the CPU figure is the gateway's own
(``time.process_time`` of this process over wall time, as a share of one core). Figures:

- requests per poll cycle (all devices) against the minimum possible (each device's map has
  three runs of registers separated by holes: 3 requests per device) and against the baseline
  measured in the same run: one request per value (no coalescing);
- share of polls that started within 100 ms of their slot (target >= 99.5 %);
- gateway CPU as a share of one core (target <= 25 %), coalesced vs baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modbus_gateway.config import parse_config
from modbus_gateway.plan import ReadBlock
from modbus_gateway.poller import Gateway

N_DEVICES = 20
RUNS = ((0, "uint16"), (100, "float32"), (200, "int16"))  # 20 registers each = 60 registers


def bench_profile_doc() -> dict:
    """A profile of 60 registers in three runs of 20, with holes between the runs."""
    regs: dict[str, dict] = {}
    for base, typ in RUNS:
        step = 2 if typ == "float32" else 1
        for i in range(0, 20, step):
            regs[f"r{base + i}"] = {
                "address": base + i, "function": 3, "type": typ, "sim_value": float(i + 1),
            }  # fmt: skip
    return {"name": "bench60", "kind": "generic", "registers": regs}


def write_profile(directory: Path) -> Path:
    path = directory / "bench60.yaml"
    path.write_text(yaml.safe_dump(bench_profile_doc()), encoding="utf-8")
    return path


def _serve(n: int, profile_path: str, ports, stop) -> None:
    from modbus_gateway.profiles import load_profile
    from modbus_gateway.simulator import SimServer, SimulatedDevice

    async def main() -> None:
        prof = load_profile(profile_path)
        servers = [await SimServer({1: SimulatedDevice(prof)}).start() for _ in range(n)]
        ports.put([s.port for s in servers])
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for s in servers:
            await s.stop()

    asyncio.run(main())


async def run_gateway(
    ports: list[int], profile_path: Path, duration_s: float, coalesce: bool
) -> dict[str, float]:
    """Poll every simulator for ``duration_s``; returns the figures of this run."""
    devices = [
        {"name": f"d{i}", "profile": str(profile_path), "port": p, "poll_interval_s": 1.0}
        for i, p in enumerate(ports)
    ]
    cfg = parse_config({"devices": devices}, "bench")
    delivered = 0

    def on_samples(samples) -> None:
        nonlocal delivered
        delivered += len(samples)

    gw = Gateway(cfg, on_samples)
    if not coalesce:  # the baseline: one request per value
        for d in gw.devices.values():
            regs = d.profile.registers
            d.blocks = [ReadBlock(3, regs[n].address, regs[n].words, (n,)) for n in d.channels]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await gw.run(duration_s)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gw.close()
    polls = sum(d.polls for d in gw.devices.values())
    requests = sum(d.requests for d in gw.devices.values())
    return {
        "polls": polls,
        "requests_per_cycle": requests / (polls / len(ports)),
        "on_time": sum(d.polls_on_time for d in gw.devices.values()) / polls,
        "cpu_share": cpu / wall,
        "wall_s": wall,
        "samples": delivered,
        "all_ok": float(all(d.status == "ok" for d in gw.devices.values())),
    }


async def profile_cycles(name: str, cycles: int) -> dict[str, float]:
    """Requests per poll cycle counted at the simulator and wall time per cycle for a shipped
    profile (every register), coalesced with gap filling vs one request per value."""
    from modbus_gateway.profiles import shipped_profiles
    from modbus_gateway.simulator import SimServer, SimulatedDevice

    prof = shipped_profiles()[name]
    sim = SimulatedDevice(prof)
    srv = await SimServer({prof.default_unit_id or 1: sim}).start()
    channels = {n: f"d.{n}" for n, r in prof.registers.items() if r.type != "sunssf"}
    cfg = parse_config(
        {"devices": [{"name": "d", "profile": name, "port": srv.port, "timeout_s": 10.0,
                      "channels": channels}]},
        "bench",
    )  # fmt: skip
    out: dict[str, float] = {}
    try:
        for mode in ("coalesced", "naive"):
            gw = Gateway(cfg)
            dev = gw.devices["d"]
            await gw.poll_once(dev)  # SunSpec discovery, connection
            if mode == "naive":
                regs = dev.driver.profile.registers
                wanted = {r for b in dev.blocks for r in b.registers}
                dev.blocks = [
                    ReadBlock(regs[n].function, regs[n].address, regs[n].words, (n,))
                    for n in sorted(wanted)
                ]
            before, t0 = sim.requests, time.perf_counter()
            for _ in range(cycles):
                await gw.poll_once(dev)
            out[f"{mode}_requests"] = (sim.requests - before) / cycles
            out[f"{mode}_ms"] = 1000 * (time.perf_counter() - t0) / cycles
            gw.close()
    finally:
        await srv.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Modbus gateway benchmark")
    ap.add_argument("--quick", action="store_true", help="~5 s smoke version")
    ap.add_argument("--devices", type=int, default=N_DEVICES)
    args = ap.parse_args(argv)
    main_s, base_s = (3.0, 2.0) if args.quick else (60.0, 15.0)

    tmp = tempfile.TemporaryDirectory(prefix="noaber-bench-")
    profile_path = write_profile(Path(tmp.name))
    ctx = mp.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(
        target=_serve, args=(args.devices, str(profile_path), ports_q, stop), daemon=True
    )
    proc.start()
    try:
        ports = ports_q.get(timeout=60)
        coalesced = asyncio.run(run_gateway(ports, profile_path, main_s, coalesce=True))
        naive = asyncio.run(run_gateway(ports, profile_path, base_s, coalesce=False))
    finally:
        stop.set()
        proc.join(10)
        tmp.cleanup()
    minimum = len(RUNS) * args.devices
    c, b = coalesced, naive
    print(f"gateway bench: {args.devices} devices x 60 registers, poll interval 1 s")
    print(
        f"  runs: coalesced {c['wall_s']:.1f} s, baseline (one request per value) {b['wall_s']:.1f} s"
    )
    print(
        f"  requests per poll cycle: {c['requests_per_cycle']:.1f} (minimum possible {minimum}, "
        f"ratio {c['requests_per_cycle'] / minimum:.2f}); baseline {b['requests_per_cycle']:.1f} "
        f"(ratio {b['requests_per_cycle'] / minimum:.2f})"
    )
    print(
        f"  polls on time (<= 100 ms late): {100 * c['on_time']:.2f} % of {c['polls']} "
        f"(target >= 99.5 %); baseline {100 * b['on_time']:.2f} %"
    )
    print(
        f"  gateway CPU: {100 * c['cpu_share']:.1f} % of one core (target <= 25 %); baseline "
        f"{100 * b['cpu_share']:.1f} %; ratio coalesced/baseline {c['cpu_share'] / b['cpu_share']:.2f}"
    )
    print(f"  samples: {c['samples']}; all devices ok: {bool(c['all_ok'])}")
    cycles = 5 if args.quick else 50
    for name in ("sunspec_inverter", "eastron_sdm630"):
        f = asyncio.run(profile_cycles(name, cycles))
        print(
            f"  requests per cycle, coalesced vs one request per value: {name} "
            f"{f['coalesced_requests']:.0f} vs {f['naive_requests']:.0f} "
            f"(ratio {f['naive_requests'] / f['coalesced_requests']:.1f}); "
            f"{f['coalesced_ms']:.1f} ms vs {f['naive_ms']:.1f} ms per cycle "
            f"(ratio {f['naive_ms'] / f['coalesced_ms']:.1f}, {cycles} cycles)"
        )
    from modbus_gateway.profiles import shipped_profiles

    names = sorted(shipped_profiles())
    lib = [asyncio.run(profile_cycles(n, 2 if args.quick else 5)) for n in names]
    co, nv = sum(f["coalesced_requests"] for f in lib), sum(f["naive_requests"] for f in lib)
    print(
        f"  device library: {len(names)} profiles; requests per cycle summed over all, "
        f"coalesced vs one request per value: {co:.0f} vs {nv:.0f} (ratio {nv / co:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
