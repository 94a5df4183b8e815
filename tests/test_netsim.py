"""The seeded impairment model and the UDP proxy that applies it."""

from __future__ import annotations

import asyncio
import statistics
from typing import cast

import pytest

from voxwire.netsim import Impairment, UdpImpairmentProxy


def run(net: Impairment, n: int = 20000, step: float = 0.02) -> list[list[float]]:
    return [net.schedule(step * i) for i in range(n)]


def test_same_seed_same_schedule_and_different_seed_differs() -> None:
    kw = {"delay": 0.05, "jitter": 0.02, "loss": 0.1, "duplicate": 0.02, "reorder": 0.05}
    assert run(Impairment(seed=4, **kw), 2000) == run(Impairment(seed=4, **kw), 2000)
    assert run(Impairment(seed=4, **kw), 2000) != run(Impairment(seed=5, **kw), 2000)


def test_independent_loss_and_duplication_rates() -> None:
    net = Impairment(seed=1, loss=0.1, duplicate=0.05)
    out = run(net)
    lost = sum(not a for a in out)
    assert lost == net.stats.lost
    assert 0.09 < lost / len(out) < 0.11
    assert 0.04 < net.stats.duplicated / len(out) < 0.06
    assert sum(len(a) for a in out) == net.stats.delivered


def test_gilbert_elliott_bursts_have_the_configured_mean_length() -> None:
    # Enter the bad state with 2 %, leave with 25 %: mean burst 4 packets, all lost.
    net = Impairment(seed=2, burst_enter=0.02, burst_exit=0.25, burst_loss=1.0)
    out = run(net, 100000)
    bursts, current = [], 0
    for arrivals in out:
        if not arrivals:
            current += 1
        elif current:
            bursts.append(current)
            current = 0
    assert 3.5 < statistics.mean(bursts) < 4.5
    assert net.stats.burst_losses == net.stats.lost
    # Stationary bad-state share: 0.02 / (0.02 + 0.25) = 7.4 %.
    assert 0.065 < net.stats.lost / len(out) < 0.085


def test_delay_jitter_and_fifo_order() -> None:
    net = Impairment(seed=3, delay=0.080, jitter=0.015, correlation=0.5)
    out = run(net, 20000)
    delays = [a[0] - 0.02 * i for i, a in enumerate(out)]
    assert all(d >= 0 for d in delays)
    arrivals = [a[0] for a in out]
    assert arrivals == sorted(arrivals)  # one queue: no overtaking
    assert 0.080 < statistics.mean(delays) < 0.090  # queueing only adds delay


def test_reordering_lets_later_packets_overtake() -> None:
    net = Impairment(seed=6, delay=0.02, reorder=0.1, reorder_delay=0.05)
    out = run(net, 5000)
    arrivals = [a[0] for a in out]
    overtaken = sum(1 for i in range(len(arrivals) - 1) if arrivals[i] > arrivals[i + 1])
    assert overtaken > 0
    assert 0.08 < net.stats.reordered / len(out) < 0.12


def test_heavy_tail_has_rare_large_delays() -> None:
    net = Impairment(seed=7, delay=0.05, jitter=0.01, heavy_tail=True, fifo=False)
    delays = sorted(a[0] - 0.02 * i for i, a in enumerate(run(net, 50000)))
    p50, p999 = delays[len(delays) // 2], delays[int(len(delays) * 0.999)]
    assert p999 - p50 > 6 * 0.01  # far beyond a normal tail (about 3 sigma)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match=r"loss must be a probability in \[0, 1\], got 1.5"):
        Impairment(loss=1.5)
    with pytest.raises(ValueError, match="correlation must be in"):
        Impairment(correlation=1.0)
    with pytest.raises(ValueError, match="jitter must be >= 0"):
        Impairment(jitter=-1)
    net = Impairment()
    net.schedule(1.0)
    with pytest.raises(ValueError, match="must not decrease"):
        net.schedule(0.5)


def test_udp_proxy_delivers_what_the_model_says() -> None:
    async def main() -> tuple[list[bytes], int, int]:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        done = loop.create_future()

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                received.append(data)

        sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        target = sink.get_extra_info("sockname")[:2]
        net = Impairment(seed=9, delay=0.005, jitter=0.002, loss=0.1, duplicate=0.05)
        proxy = UdpImpairmentProxy(target, net)
        address = await proxy.start()
        src, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=address)
        for i in range(300):
            src.sendto(i.to_bytes(4, "big"))
            if i % 20 == 0:
                await asyncio.sleep(0.001)
        loop.call_later(0.3, done.set_result, None)
        await asyncio.wait_for(done, 5)
        src.close()
        proxy.close()
        sink.close()
        assert not proxy._out._handles  # nothing left in flight
        return received, net.stats.delivered, proxy.forwarded

    received, expected, forwarded = asyncio.run(main())
    assert len(received) == expected == forwarded
    assert 240 < len(received) < 300
    assert {int.from_bytes(d, "big") for d in received} <= set(range(300))


def test_udp_proxy_keeps_the_queue_order_when_delivery_times_tie() -> None:
    # A burst into a FIFO queue with large jitter: many packets leave the queue at the
    # same instant, and asyncio alone does not order timers that share a deadline.
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        received: list[int] = []

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                received.append(int.from_bytes(data, "big"))

        sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        net = Impairment(seed=3, delay=0.01, jitter=0.03)
        proxy = UdpImpairmentProxy(sink.get_extra_info("sockname")[:2], net)
        src, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=await proxy.start()
        )
        for i in range(200):
            src.sendto(i.to_bytes(4, "big"))
            if i % 25 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.4)
        src.close()
        proxy.close()
        sink.close()
        return received

    received = asyncio.run(main())
    assert len(received) == 200
    assert received == sorted(received)


def test_udp_proxy_with_replies_relays_both_ways_and_impairs_one() -> None:
    # An echo server behind the proxy: requests are impaired (10% lost), the answers come
    # back to the sender unimpaired, through the proxy's own ports.
    async def main() -> tuple[list[tuple[bytes, tuple[str, int]]], int, int, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        answers: list[tuple[bytes, tuple[str, int]]] = []

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                self.transport.sendto(b"re:" + data, addr)

        class Caller(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                answers.append((data, (str(addr[0]), int(addr[1]))))

        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        net = Impairment(seed=4, delay=0.002, loss=0.1)
        proxy = UdpImpairmentProxy(echo.get_extra_info("sockname")[:2], net, replies=True)
        address = await proxy.start()
        caller, _ = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1", 0))
        for i in range(200):
            caller.sendto(i.to_bytes(4, "big"), address)
        await asyncio.sleep(0.3)
        for transport in (caller, echo):
            transport.close()
        proxy.close()
        return answers, net.stats.delivered, proxy.replied, address

    answers, delivered, replied, address = asyncio.run(main())
    assert 150 < delivered < 200  # the requests were impaired
    assert len(answers) == replied == delivered  # every answer came back
    assert all(source == address for _, source in answers)  # from the proxy's port
    assert all(data.startswith(b"re:") for data, _ in answers)


def test_udp_proxy_reply_impairment_impairs_the_way_back_on_its_own() -> None:
    # Requests go out clean; the answers are delayed 30 ms and 20% lost by an impairment of
    # their own, except the ones ``only`` leaves alone (odd requests), relayed at once.
    async def main() -> tuple[dict[int, float], dict[int, float], Impairment, Impairment]:
        loop = asyncio.get_running_loop()
        sent: dict[int, float] = {}
        back: dict[int, float] = {}

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                self.transport.sendto(data, addr)

        class Caller(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                back[int.from_bytes(data, "big")] = loop.time()

        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        out, ret = Impairment(seed=1), Impairment(seed=5, delay=0.03, loss=0.2)
        proxy = UdpImpairmentProxy(
            echo.get_extra_info("sockname")[:2],
            out,
            replies=True,
            only=lambda d: d[-1] % 2 == 0,
            reply_impairment=ret,
        )
        address = await proxy.start()
        caller, _ = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1", 0))
        for i in range(200):
            sent[i] = loop.time()
            caller.sendto(i.to_bytes(2, "big"), address)
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
        for transport in (caller, echo):
            transport.close()
        proxy.close()
        return sent, back, out, ret

    sent, back, out, ret = asyncio.run(main())
    assert (out.stats.lost, out.stats.delivered) == (0, 100)  # the even requests, clean
    assert ret.stats.delivered + ret.stats.lost == 100  # the even answers went through it
    assert 5 < ret.stats.lost < 40
    even = [i for i in back if i % 2 == 0]
    assert len(even) == ret.stats.delivered
    assert all(back[i] - sent[i] >= 0.03 for i in even)  # delayed on the way back
    assert all(i in back for i in range(1, 200, 2))  # the others all came back
    assert statistics.median(back[i] - sent[i] for i in range(1, 200, 2)) < 0.02  # at once
    with pytest.raises(ValueError, match="replies=True"):
        UdpImpairmentProxy(("127.0.0.1", 9), Impairment(), reply_impairment=Impairment())


def test_udp_proxy_without_replies_drops_what_the_target_sends_back() -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                self.transport.sendto(data, addr)

        class Caller(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                got.append(data)

        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        proxy = UdpImpairmentProxy(echo.get_extra_info("sockname")[:2], Impairment())
        address = await proxy.start()
        caller, _ = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1", 0))
        for i in range(10):
            caller.sendto(bytes([i]), address)
        await asyncio.sleep(0.1)
        for transport in (caller, echo):
            transport.close()
        proxy.close()
        return len(got), proxy.forwarded

    got, forwarded = asyncio.run(main())
    assert forwarded == 10
    assert got == 0


def test_udp_proxy_impairs_only_the_datagrams_it_is_told_to() -> None:
    async def main() -> tuple[list[bytes], Impairment]:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                received.append(data)

        sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        net = Impairment(seed=1, loss=1.0)  # every impaired datagram is lost
        proxy = UdpImpairmentProxy(
            sink.get_extra_info("sockname")[:2], net, only=lambda d: d.startswith(b"media")
        )
        src, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=await proxy.start()
        )
        for i in range(20):
            src.sendto(b"media %d" % i if i % 2 else b"control %d" % i)
        await asyncio.sleep(0.1)
        src.close()
        proxy.close()
        sink.close()
        return received, net

    received, net = asyncio.run(main())
    assert received == [b"control %d" % i for i in range(0, 20, 2)]
    assert net.stats.sent == net.stats.lost == 10
