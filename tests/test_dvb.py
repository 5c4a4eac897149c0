"""The DVB source on real MPEG transport streams made here with PyAV (MP2, AAC, AC-3), merged into a
two-programme multiplex with our own PAT/SDT/TDT, damaged on purpose, and served from file, stdin,
HTTP and UDP on loopback. Frames are checked on a real PULL socket; detection on a real core."""

from __future__ import annotations

import dataclasses
import fractions
import functools
import http.server
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torchaudio
import zmq

from daemon_harness import Daemon, demo_audio, demo_truth, run_cli
from voicewatch.plugins.tsdecode import PtsClock
from voicewatch.plugins.tsinput import Backoff
from voicewatch.plugins.tspsi import PsiMonitor, Service, Track
from voicewatch.plugins.tsselect import SelectionError, ServiceSpec, TrackPolicy, plan
from voicewatch.scan import segments

RATE = 48000
HOP = 1.0
TOLERANCE = HOP + 0.2  # codec delay and frame granularity on top of one hop
WRAP_S = (1 << 33) / 90000
TDT_UTC = 1795000000.0  # 2026-11-18 09:46:40 UTC


# ---------------------------------------------------------------- transport streams made by the test

def demo_48k() -> np.ndarray:
    audio, rate = demo_audio()
    wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, RATE).numpy()
    return np.stack([wave, wave]).astype(np.float32)


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.stack([np.sin(2 * np.pi * hz * t)] * 2).astype(np.float32) * 0.3


def encode_ts(path: Path, tracks: list[tuple[str, str, np.ndarray]], start_s: float = 10.0, service_id: int = 1,
              pmt_pid: int = 0x1000, first_pid: int = 0x100, version: int = 0, name: str = "One",
              jump_at_s: float | None = None, jump_s: float = 0.0) -> Path:
    """One programme of (codec, language, [2, n] float audio) tracks, PIDs from `first_pid` up."""
    out = av.open(str(path), "w", format="mpegts", options={
        "mpegts_service_id": str(service_id), "mpegts_pmt_start_pid": str(pmt_pid),
        "mpegts_start_pid": str(first_pid), "tables_version": str(version)})
    out.metadata["service_name"] = name
    streams = []
    for codec, language, _ in tracks:
        stream = out.add_stream(codec, rate=RATE, layout="stereo")
        stream.metadata["language"] = language
        streams.append(stream)
    length = min(audio.shape[1] for _, _, audio in tracks)
    resamplers = [av.AudioResampler(format=s.codec_context.format.name, layout="stereo", rate=RATE) for s in streams]
    step = 1152
    for start in range(0, length - step + 1, step):
        t = start / RATE
        pts = round((start_s + t + (jump_s if jump_at_s is not None and t >= jump_at_s else 0.0)) * RATE)
        for stream, resampler, (_, _, audio) in zip(streams, resamplers, tracks, strict=True):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + step]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.time_base, frame.pts = RATE, fractions.Fraction(1, RATE), pts
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    out.mux(packet)
    for stream in streams:
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()
    return path


def packets(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[i:i + 188] for i in range(0, len(data), 188)]


def pid_of(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


def crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def section(table_id: int, extension: int, body: bytes) -> bytes:
    head = bytes([table_id, 0xB0 | (len(body) + 9) >> 8, (len(body) + 9) & 0xFF, extension >> 8, extension & 0xFF,
                  0xC1, 0, 0])
    return head + body + crc32_mpeg2(head + body).to_bytes(4, "big")


def tdt_section(utc: float) -> bytes:
    days, seconds = divmod(int(utc), 86400)
    mjd = days + 40587
    bcd = [(v // 10) << 4 | v % 10 for v in (seconds // 3600, seconds // 60 % 60, seconds % 60)]
    return bytes([0x70, 0x70, 0x05, mjd >> 8, mjd & 0xFF, *bcd])


def psi_packet(pid: int, table: bytes, counters: dict[int, int]) -> bytes:
    cc = counters[pid] = (counters.get(pid, -1) + 1) & 0x0F
    payload = b"\x00" + table
    return bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | cc]) + payload + b"\xff" * (184 - len(payload))


def multiplex(parts: list[Path], services: list[tuple[int, int, str]], tdt_at: float | None = None) -> bytes:
    """The parts' packets interleaved in proportion, their PAT/SDT replaced by one PAT and one SDT naming
    all `(service id, PMT PID, name)`; a TDT after the fraction `tdt_at` of the packets."""
    streams = [[p for p in packets(path) if pid_of(p) not in (0x00, 0x11)] for path in parts]
    pat = section(0x00, 1, b"".join(sid.to_bytes(2, "big") + (0xE000 | pmt).to_bytes(2, "big")
                                    for sid, pmt, _ in services))
    sdt = section(0x42, 1, b"\x00\x01\xff" + b"".join(
        sid.to_bytes(2, "big") + b"\xfc" + (0x8000 | len(name) + 5).to_bytes(2, "big")
        + bytes([0x48, len(name) + 3, 0x02, 0, len(name)]) + name.encode() for sid, _, name in services))
    counters: dict[int, int] = {}
    out, index, emitted = [], [0] * len(streams), 0
    while any(i < len(s) for i, s in zip(index, streams, strict=True)):
        part = min((i for i in range(len(streams)) if index[i] < len(streams[i])),
                   key=lambda i: index[i] / len(streams[i]))
        if emitted % 40 == 0:
            out += [psi_packet(0x00, pat, counters), psi_packet(0x11, sdt, counters)]
        if tdt_at is not None and index[0] / len(streams[0]) >= tdt_at:
            out.append(psi_packet(0x14, tdt_section(TDT_UTC), counters))
            tdt_at = None
        out.append(streams[part][index[part]])
        index[part] += 1
        emitted += 1
    return b"".join(out)


@dataclasses.dataclass(frozen=True)
class Files:
    mux: Path
    """Service 101 "Uno": MP2 ita (the demo voices). Service 202 "Due": AAC deu (the demo voices) and
    MP2 eng (a tone). TDT 2026-11-18 09:46:40 UTC at 50 % of programme 1's packets."""
    one: Path
    """Programme 1 alone, straight from FFmpeg (its own PAT/PMT/SDT)."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("ts")
    voices = demo_48k()
    one = encode_ts(folder / "one.ts", [("mp2", "ita", voices)], service_id=101, pmt_pid=0x1000, first_pid=0x100,
                    name="Uno")
    two = encode_ts(folder / "two.ts", [("aac", "deu", voices), ("mp2", "eng", tone(voices.shape[1] / RATE))],
                    service_id=202, pmt_pid=0x1100, first_pid=0x200, name="Due")
    mux = folder / "mux.ts"
    mux.write_bytes(multiplex([one, two], [(101, 0x1000, "Uno"), (202, 0x1100, "Due")], tdt_at=0.5))
    return Files(mux, one)


# ---------------------------------------------------------------- running the source

@dataclasses.dataclass
class Run:
    code: int
    stderr: str
    frames: list[tuple[str, dict, bytes]]

    def of(self, stream: str) -> list[tuple[dict, bytes]]:
        return [(h, pcm) for s, h, pcm in self.frames if s == stream]

    def summary(self) -> dict:
        line = next(line for line in self.stderr.splitlines() if "dvb source done:" in line)
        return json.loads(line.split("dvb source done:", 1)[1])


def run_source(tmp_path: Path, *args: str, stdin: bytes | None = None, timeout: float = 60,
               on_log: tuple[str, Callable[[], None]] | None = None) -> Run:
    """The dvb source with ARGS into a PULL socket of ours; every frame received, in order.
    `on_log` = (text, action): run the action once the source logs a line containing the text."""
    endpoint = f"ipc://{tmp_path}/pull-{random.getrandbits(32)}"
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.bind(endpoint)
    process = subprocess.Popen([sys.executable, "-m", "voicewatch", "source", "dvb", *args, "--connect", endpoint],
                               stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if stdin is not None:
        threading.Thread(target=lambda: (process.stdin.write(stdin), process.stdin.close()), daemon=True).start()
    stderr: list[bytes] = []

    def read_log() -> None:
        for line in process.stderr:
            stderr.append(line)
            if on_log is not None and on_log[0].encode() in line:
                threading.Thread(target=on_log[1], daemon=True).start()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    frames = []
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        while pull.poll(50):
            stream, header, pcm = pull.recv_multipart()
            frames.append((stream.decode(), json.loads(header), pcm))
    if process.poll() is None:
        process.kill()
    while pull.poll(200):
        stream, header, pcm = pull.recv_multipart()
        frames.append((stream.decode(), json.loads(header), pcm))
    pull.close(linger=0)
    reader.join(10)
    return Run(process.wait(), b"".join(stderr).decode(errors="replace"), frames)


def assert_continuous(frames: list[tuple[dict, bytes]], channels: int = 2) -> None:
    """seq +1 per frame and pts advancing exactly by each frame's sample count: one unbroken clock."""
    for (a, pcm), (b, _) in itertools.pairwise(frames):
        assert b["seq"] == a["seq"] + 1, (a, b)
        assert b["pts"] == pytest.approx(a["pts"] + len(pcm) / (2 * channels * a["rate"]), abs=1e-6), (a, b)


def seq_gaps(frames: list[tuple[dict, bytes]]) -> list[tuple[dict, dict]]:
    return [(a, b) for (a, _), (b, _) in itertools.pairwise(frames) if b["seq"] != a["seq"] + 1]


def loudness(frames: list[tuple[dict, bytes]]) -> tuple[float, float]:
    """(RMS, fraction of energy at 440 Hz) of the decoded audio, to tell the tone from the voices."""
    pcm = np.frombuffer(b"".join(p for _, p in frames), "<i2").reshape(-1, 2)[:, 0].astype(np.float64) / 32768
    spectrum = np.abs(np.fft.rfft(pcm)) ** 2
    bin_440 = round(440 * len(pcm) / RATE)
    return float(np.sqrt(np.mean(pcm ** 2))), float(spectrum[bin_440 - 3:bin_440 + 4].sum() / spectrum.sum())


def samples_of(frames: list[tuple[dict, bytes]]) -> int:
    return sum(len(p) for _, p in frames) // 4


# ---------------------------------------------------------------- pure parts

def test_pts_unwraps_across_the_33_bit_wrap_whether_or_not_ffmpeg_did() -> None:
    near_end = (1 << 33) - 90000
    for after in (45000, (1 << 33) + 45000):  # wrapped by the broadcaster, or already unwrapped by FFmpeg
        clock = PtsClock()
        assert clock.seconds(near_end) == pytest.approx(near_end / 90000)
        assert clock.seconds(after) == pytest.approx(((1 << 33) + 45000) / 90000)
        assert clock.seconds(after + 90000) == pytest.approx(((1 << 33) + 135000) / 90000)


def test_backoff_doubles_up_to_the_cap_with_jitter_and_starts_over_after_success() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 6  # jittered: reconnecting sources do not stampede together
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_the_psi_monitor_reads_services_names_tracks_and_dvb_time(files: Files) -> None:
    monitor = PsiMonitor()
    data = files.mux.read_bytes()
    for start in range(0, len(data), 1000):  # slices that cut packets anywhere
        monitor.feed(data[start:start + 1000])
    assert monitor.services == {
        101: Service(101, 0x1000, "Uno", 0, (Track(0x100, "mp2", "ita"),)),
        202: Service(202, 0x1100, "Due", 0, (Track(0x200, "aac", "deu"), Track(0x201, "mp2", "eng"))),
    }
    assert monitor.anchor is not None and monitor.anchor.utc == TDT_UTC
    assert 0x100 in monitor.anchor.pts
    assert dataclasses.asdict(monitor.counters) == {"packets": len(data) // 188, "sync_losses": 0, "transport_errors": 0,
                                                    "continuity_errors": 0, "bad_sections": 0}


def test_tracks_are_chosen_by_service_id_or_name_pid_or_language_with_a_policy_for_loss() -> None:
    monitor = PsiMonitor()
    monitor.services = {1: Service(1, 0x1000, "Das Erste", 3, (Track(0x100, "mp2", "deu"), Track(0x101, "ac3", "eng"))),
                        2: Service(2, 0x1100, "Radio", 1, (Track(0x200, "aac", "deu"),))}
    specs = [ServiceSpec.parse("das erste=ch1"), ServiceSpec.parse("0x2=radio")]
    assert plan(monitor, specs, TrackPolicy(languages=("fra", "eng")), "dvb") == {
        "ch1": Track(0x101, "ac3", "eng"), "radio": Track(0x200, "aac", "deu")}
    assert plan(monitor, [], TrackPolicy(pid=0x101), "dvb") == {"dvb": Track(0x101, "ac3", "eng")}
    assert plan(monitor, specs, TrackPolicy(languages=("fra",), on_loss="next"), "dvb")["radio"].pid == 0x200
    assert plan(monitor, specs, TrackPolicy(languages=("fra",), on_loss="wait"), "dvb") == {}
    with pytest.raises(SelectionError, match="no service 'ZDF'.*Das Erste"):
        plan(monitor, [ServiceSpec.parse("ZDF")], TrackPolicy(), "dvb", strict=True)
    with pytest.raises(SelectionError, match="PID 999"):
        plan(monitor, specs, TrackPolicy(pid=999), "dvb", strict=True)
    with pytest.raises(ValueError, match="STREAM"):
        ServiceSpec.parse("1=bad.name")


# ---------------------------------------------------------------- the source process, frame by frame

def test_two_services_of_one_multiplex_become_two_unbroken_streams(files: Files, tmp_path: Path) -> None:
    run = run_source(tmp_path, str(files.mux), "--service", "101=uno", "--service", "Due=due", "--language", "deu")
    assert run.code == 0, run.stderr
    uno, due = run.of("uno"), run.of("due")
    for frames in (uno, due):
        assert frames[0][0]["seq"] == 0 and frames[-1][0].get("eos") is True
        assert {(h["rate"], h["channels"], h["format"]) for h, _ in frames} == {(RATE, 2, "s16le")}
        assert_continuous(frames)
        assert abs(frames[0][0]["pts"] - 10.0) < 0.05  # the TS clock: PTS 10 s, less the codec delay
        assert samples_of(frames) / RATE == pytest.approx(79.0, abs=0.1)
        assert all("wall" not in h for h, _ in frames)  # a file: no wall clock unless asked for
    assert "aac" in run.stderr and "PID 512" in run.stderr
    assert loudness(due)[1] < 0.05  # the German AAC track (voices), not the English tone


def test_the_second_language_track_is_the_tone(files: Files, tmp_path: Path) -> None:
    run = run_source(tmp_path, str(files.mux), "--service", "202=eng", "--language", "eng")
    assert run.code == 0, run.stderr
    assert loudness(run.of("eng"))[1] > 0.9


def test_wall_time_is_anchored_on_the_dvb_tdt(files: Files, tmp_path: Path) -> None:
    run = run_source(tmp_path, str(files.mux), "--service", "101=uno", "--wall", "tdt")
    assert run.code == 0, run.stderr
    frames = run.of("uno")
    # Before the TDT (half way through) the receive time; from then on the broadcast's own UTC.
    after = [h for h, _ in frames if h["pts"] > 10 + 79 / 2 + 1]
    offsets = {round(h["wall"] - h["pts"], 3) for h in after}
    assert len(offsets) == 1
    assert offsets.pop() == pytest.approx(TDT_UTC - (10 + 79 / 2), abs=0.5)
    assert abs(frames[0][0]["wall"] - time.time()) < 120


def test_a_pts_jump_skips_one_seq_and_restarts_the_clock(tmp_path: Path) -> None:
    jumpy = encode_ts(tmp_path / "jump.ts", [("mp2", "ita", tone(6.0))], jump_at_s=3.0, jump_s=100.0)
    run = run_source(tmp_path, str(jumpy), "--stream", "cut")
    assert run.code == 0, run.stderr
    frames = run.of("cut")
    gaps = seq_gaps(frames)
    assert len(gaps) == 1 and gaps[0][1]["seq"] == gaps[0][0]["seq"] + 2
    before, after = gaps[0]
    assert after["pts"] == pytest.approx(13.0 + 100.0, abs=0.05)
    assert run.summary()["decode"]["discontinuities"] == 1


def test_a_pmt_change_to_another_pid_and_codec_reopens_the_demuxer_and_goes_on(tmp_path: Path) -> None:
    first = encode_ts(tmp_path / "a.ts", [("mp2", "deu", tone(4.0, 300))], start_s=10.0, first_pid=0x100, version=0)
    second = encode_ts(tmp_path / "b.ts", [("ac3", "deu", tone(4.0, 600))], start_s=14.0, first_pid=0x101, version=1)
    spliced = tmp_path / "pmt.ts"
    spliced.write_bytes(first.read_bytes() + second.read_bytes())
    run = run_source(tmp_path, str(spliced), "--stream", "pmt", "--language", "deu")
    assert run.code == 0, run.stderr
    frames = run.of("pmt")
    gaps = seq_gaps(frames)
    assert len(gaps) == 1, run.stderr
    assert run.summary()["decode"]["reopenings"] == 1
    assert "PID 257" in run.stderr and "ac3" in run.stderr
    after = [f for f in frames if f[0]["seq"] >= gaps[0][1]["seq"]]
    assert samples_of(after) / RATE > 3.0  # the AC-3 part decoded
    assert_continuous(after)


def damage(path: Path, audio_pid: int) -> tuple[bytes, int, int]:
    """Five audio packets flagged as transport errors, five others lost, a run of junk between packets."""
    data = packets(path)
    audio = [i for i, p in enumerate(data) if pid_of(p) == audio_pid]
    flagged, lost = audio[100:1100:200], audio[200:1200:200]
    for i in flagged:
        data[i] = bytes([data[i][0], data[i][1] | 0x80]) + data[i][2:]
    junk_at = audio[700]
    out = [p if i != junk_at else b"\x00" * 100 + p for i, p in enumerate(data) if i not in lost]
    return b"".join(out), len(flagged), len(lost)


def test_damaged_packets_are_skipped_and_counted_and_the_clock_holds(files: Files, tmp_path: Path) -> None:
    data, flagged, lost = damage(files.one, 0x100)
    (tmp_path / "damaged.ts").write_bytes(data)
    run = run_source(tmp_path, str(tmp_path / "damaged.ts"), "--stream", "bad")
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert summary["ts"]["transport_errors"] == flagged and summary["ts"]["continuity_errors"] == lost
    assert summary["ts"]["sync_losses"] == 1
    assert summary["decode"]["corrupt_packets"] >= 1 and summary["decode"]["filled_samples"] > 0
    frames = run.of("bad")
    assert seq_gaps(frames) == []  # a few lost frames are filled with silence: no gap, no drift
    assert frames[-1][0]["pts"] == pytest.approx(10.0 + 79.0, abs=0.1)


def test_stdin_gives_the_same_frames_as_the_file(files: Files, tmp_path: Path) -> None:
    from_file = run_source(tmp_path, str(files.one), "--stream", "s")
    from_pipe = run_source(tmp_path, "-", "--stream", "s", "--wall", "none", stdin=files.one.read_bytes())
    assert from_pipe.code == 0, from_pipe.stderr
    assert [(h, p) for h, p in from_pipe.of("s")] == [(h, p) for h, p in from_file.of("s")]


# ---------------------------------------------------------------- network inputs on loopback

class TsServer(http.server.ThreadingHTTPServer):
    """Serves `payloads[n]` to the n-th request; `hang` keeps the connection open after the bytes."""

    def __init__(self, payloads: list[bytes], hang: bool = False) -> None:
        self.payloads, self.hang, self.requests = payloads, hang, 0
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), TsHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/stream/channelid/1"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class TsHandler(http.server.BaseHTTPRequestHandler):
    server: TsServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        index = self.server.requests
        self.server.requests += 1
        if index >= len(self.server.payloads):
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(self.server.payloads[index])
        self.wfile.flush()
        if self.server.hang:
            self.server.release.wait(30)

    def log_message(self, *args: object) -> None:
        pass


def test_http_reconnects_after_the_connection_drops_and_the_restart_is_a_gap(files: Files, tmp_path: Path) -> None:
    data = files.one.read_bytes()
    half = len(data) // 2 // 188 * 188
    server = TsServer([data[:half], data])
    try:
        run = run_source(tmp_path, server.url, "--stream", "web", "--retries", "1")
    finally:
        server.close()
    assert run.code == 2 and "giving up" in run.stderr and "Traceback" not in run.stderr
    frames = run.of("web")
    gaps = seq_gaps(frames)
    assert len(gaps) == 1  # the second connection starts the programme again: PTS back to 10 s
    assert gaps[0][1]["pts"] == pytest.approx(10.0, abs=0.05)
    said = [(header["status"], len(pcm)) for header, pcm in frames if "status" in header]
    assert said == [("reconnecting", 0), ("recovered", 0), ("input_dead", 0)]
    assert frames[-1][0].get("eos") is True
    assert run.summary()["reconnects"] == 1


def test_an_unreachable_url_is_retried_with_backoff_then_given_up(tmp_path: Path) -> None:
    started = time.monotonic()
    run = run_source(tmp_path, "http://127.0.0.1:1/stream/channelid/1", "--retries", "3")
    assert run.code == 2 and "giving up on http://127.0.0.1:1" in run.stderr and "Traceback" not in run.stderr
    waits = [float(line.split(" in ")[1].split(" s")[0]) for line in run.stderr.splitlines() if "reconnecting" in line]
    assert len(waits) == 3 and waits[2] > waits[0]
    assert time.monotonic() - started >= sum(waits)


def udp_send(data: bytes, host: str, port: int, seconds: float) -> None:
    """7 TS packets per datagram, as tuners and TSDuck send them, spread over `seconds`; multicast
    leaves through the loopback interface and goes no further (TTL 0)."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    size = 7 * 188
    count = len(data) // size + 1
    for n, start in enumerate(range(0, len(data), size)):
        sender.sendto(data[start:start + size], (host, port))
        if n % 50 == 0:
            time.sleep(seconds / count * 50)
    sender.close()


def free_udp_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "udp://127.0.0.1:{port}"),
                                           ("239.255.42.42", "udp://239.255.42.42:{port}?localaddr=127.0.0.1")],
                         ids=["unicast", "multicast"])
def test_udp_delivers_the_same_audio_and_a_silent_input_is_dead(files: Files, tmp_path: Path, host: str, url: str) -> None:
    port = free_udp_port()
    send = functools.partial(udp_send, files.mux.read_bytes(), host, port, 2.0)
    run = run_source(tmp_path, url.format(port=port), "--service", "Uno=uno", "--stall", "1.5", "--retries", "0",
                     on_log=("listening on udp://", send))
    assert run.code == 2 and "no datagram on udp://" in run.stderr and "giving up" in run.stderr
    frames = run.of("uno")
    assert seq_gaps(frames) == [] and frames[-1][0].get("eos") is True
    assert samples_of(frames) / RATE == pytest.approx(79.0, abs=0.1)
    assert all(abs(h["wall"] - time.time()) < 120 for h, _ in frames[:5])  # live: wall clock from receive time


def test_a_missing_file_an_unknown_service_and_missing_pyav_are_clear_errors(files: Files, tmp_path: Path) -> None:
    missing = run_source(tmp_path, str(tmp_path / "none.ts"))
    assert missing.code == 2 and "none.ts" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run_source(tmp_path, str(files.mux), "--service", "ZDF")
    assert unknown.code == 2 and "no service 'ZDF'" in unknown.stderr and "101 Uno" in unknown.stderr
    code = "import sys; sys.modules['av'] = None; from voicewatch.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "source", "dvb", "x.ts"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'voicewatch[dvb]'" in result.stderr


# ---------------------------------------------------------------- end to end: a real core finds the voices

@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory):
    daemon = Daemon(tmp_path_factory.mktemp("core"), config={"health": {"idle_s": 1.5}})
    yield daemon
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def light_source(*args: str) -> subprocess.CompletedProcess[str]:
    """The dvb source as its own process, as systemd runs it."""
    return subprocess.run([sys.executable, "-m", "voicewatch", "source", "dvb", *args], capture_output=True, text=True,
                          timeout=300)


def alice_spans(events, stream: str) -> list[tuple[float, float]]:
    return [(s.start, s.end) for s in segments(events) if s.stream == stream and s.speaker == "alice"]


def assert_matches_truth(found: list[tuple[float, float]], offset: float) -> None:
    truth = [(t["start"] + offset, t["end"] + offset) for t in demo_truth() if t["speaker"] == "alice"]
    assert len(found) == len(truth), f"found {found}, truth {truth}"
    for (fs, fe), (ts, te) in zip(found, truth, strict=True):
        assert abs(fs - ts) <= TOLERANCE and abs(fe - te) <= TOLERANCE, f"found {(fs, fe)} for {(ts, te)}"


def test_both_services_through_a_core_find_the_true_segments_and_scan_agrees(core: Daemon, files: Files) -> None:
    result = light_source(str(files.mux), "--service", "Uno=e2e_mp2", "--service", "202=e2e_aac", "--language", "deu",
                          "--connect", core.ingest)
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("e2e_mp2", "e2e_aac")
    first_pts = 10.0 - 1105 / 90000  # the MP2 encoder's delay, as the frames showed
    for stream in ("e2e_mp2", "e2e_aac"):
        assert_matches_truth(alice_spans(core.received, stream), offset=10.0)
    scanned = run_cli("scan", str(files.mux), "--stream", "scan", "--json")
    assert scanned.returncode == 0, scanned.stderr
    found = [(s["start"], s["end"]) for s in map(json.loads, scanned.stdout.splitlines()) if s["speaker"] == "alice"]
    assert_matches_truth(found, offset=0.0)  # scan's clock starts at the file's first sample
    via_core = [(round(a - first_pts, 2), round(b - first_pts, 2)) for a, b in alice_spans(core.received, "e2e_mp2")]
    assert via_core == [(round(a, 2), round(b, 2)) for a, b in found]


def test_scan_picks_a_track_by_language_or_pid_like_the_source(files: Files) -> None:
    tone_track = run_cli("scan", str(files.mux), "--language", "eng", "--json")
    assert tone_track.returncode == 0 and tone_track.stdout == "", tone_track.stderr  # the English tone: nobody speaks
    missing = run_cli("scan", str(files.mux), "--pid", "0x999")
    assert missing.returncode == 2 and "no audio track with PID 0x999" in missing.stderr and "0x200 (deu)" in missing.stderr


def test_a_damaged_stream_across_the_pts_wrap_keeps_detecting_without_gaps(core: Daemon, tmp_path: Path) -> None:
    start = WRAP_S - 30.0  # the 33-bit PTS wraps 30 s in
    wrapping = encode_ts(tmp_path / "wrap.ts", [("mp2", "ita", demo_48k())], start_s=start)
    data, _, _ = damage(wrapping, 0x100)
    (tmp_path / "wrap-damaged.ts").write_bytes(data)
    result = light_source(str(tmp_path / "wrap-damaged.ts"), "--stream", "e2e_wrap", "--connect", core.ingest)
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("e2e_wrap")
    assert [e for e in core.events_of("e2e_wrap") if e.type == "gap"] == []
    assert_matches_truth(alice_spans(core.received, "e2e_wrap"), offset=start)


def test_a_pts_jump_is_a_gap_event_and_detection_goes_on(core: Daemon, tmp_path: Path) -> None:
    jumpy = encode_ts(tmp_path / "jump.ts", [("mp2", "ita", demo_48k()[:, :53 * RATE])], jump_at_s=30.0, jump_s=100.0)
    result = light_source(str(jumpy), "--stream", "e2e_cut", "--connect", core.ingest)
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("e2e_cut")
    gaps = [e for e in core.events_of("e2e_cut") if e.type == "gap"]
    assert len(gaps) == 1 and gaps[0].reason == "seq_gap" and gaps[0].end - gaps[0].start == pytest.approx(100, abs=0.2)
    assert [s for s in alice_spans(core.received, "e2e_cut") if s[0] > 140], "detection must go on after the jump"


def test_a_stalled_http_stream_is_reported_idle_by_the_core(core: Daemon, files: Files) -> None:
    data = files.one.read_bytes()
    server = TsServer([data[:len(data) // 4 // 188 * 188]], hang=True)
    try:
        source = subprocess.Popen([sys.executable, "-m", "voicewatch", "source", "dvb", server.url, "--stream",
                                   "e2e_dead", "--stall", "30", "--connect", core.ingest],
                                  stderr=subprocess.PIPE, text=True)
        idle = core.wait_for(lambda e: e.stream == "e2e_dead" and e.type == "status" and e.reason == "idle", timeout=60)
        source.terminate()
        _, stderr = source.communicate(timeout=30)
    finally:
        server.close()
    assert idle.start > 10.0
    assert source.returncode == 0 and "stopped by signal" in stderr, stderr
    core.wait_for_eos("e2e_dead")  # SIGTERM ends the stream cleanly


def test_a_stalling_input_is_reported_by_the_source_through_the_core(core: Daemon, files: Files) -> None:
    data = files.one.read_bytes()
    part = data[:len(data) // 4 // 188 * 188]
    server = TsServer([part, part], hang=True)
    try:
        result = run_cli("source", "dvb", server.url, "--stream", "e2e_stall", "--stall", "2", "--retries", "1",
                         "--connect", core.ingest)
    finally:
        server.close()
    assert result.returncode == 2 and "giving up" in result.stderr
    core.wait_for_eos("e2e_stall")
    health = ("idle", "silent", "recovered")  # the core's own view, also reported in this test's short idle_s
    notices = [e.reason for e in core.events_of("e2e_stall") if e.type in ("status", "gap") and e.reason not in health]
    assert notices == ["source_reconnecting", "source_recovered", "seq_gap", "source_input_dead", "eos"]


def test_a_source_described_in_yaml_runs_like_the_command_line(core: Daemon, tmp_path: Path) -> None:
    short = encode_ts(tmp_path / "short.ts", [("mp2", "ita", tone(3.0))], service_id=7, name="Sette")
    spec = tmp_path / "ch9.yaml"
    spec.write_text(f"plugin: dvb\nargs: ['{short}', '--service', 'Sette=e2e_yaml', '--connect', '{core.ingest}']\n")
    result = run_cli("source-config", str(spec))
    assert result.returncode == 0, result.stderr
    core.wait_for_eos("e2e_yaml")
