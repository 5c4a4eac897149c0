"""MPEG-TS packet layer and DVB service information, read from the bytes on their way to the demuxer.

FFmpeg (through PyAV) decodes the audio, but it does not tell us service ids, service names, PMT
versions or the DVB time (TDT/TOT), and it hides transport errors. `PsiMonitor.feed` sees every byte
first and keeps those: the services of the multiplex with their audio tracks, a `generation` that
changes whenever they change (a PMT or SDT update), the last UTC time broadcast with the audio PTS
that was current at that moment, and counters of damaged packets.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

import numpy as np

_LOG = logging.getLogger(__name__)
PACKET = 188
SYNC = 0x47
PAT_PID, SDT_PID, TIME_PID, NULL_PID = 0x0000, 0x0011, 0x0014, 0x1FFF
AUDIO_STREAM_TYPES = {0x03: "mp2", 0x04: "mp2", 0x0F: "aac", 0x11: "aac_latm", 0x81: "ac3", 0x87: "eac3"}
"""PMT stream types that are audio by themselves; type 0x06 (private) is audio only with a descriptor below."""
AUDIO_DESCRIPTORS = {0x6A: "ac3", 0x7A: "eac3", 0x7C: "aac"}


@dataclasses.dataclass(frozen=True)
class Track:
    pid: int
    codec: str
    """What the PMT says: mp2, aac, aac_latm, ac3 or eac3."""
    language: str | None = None
    """ISO-639-2 code from the PMT, lower case."""


@dataclasses.dataclass(frozen=True)
class Service:
    service_id: int
    pmt_pid: int
    name: str | None = None
    """From the SDT, when the multiplex carries one."""
    version: int | None = None
    """PMT version; None until the PMT has been seen."""
    tracks: tuple[Track, ...] = ()
    """Audio tracks in PMT order."""


@dataclasses.dataclass
class TsCounters:
    packets: int = 0
    sync_losses: int = 0
    """Times the 0x47 packet grid was lost and searched for again (bytes skipped)."""
    transport_errors: int = 0
    """Packets the demodulator flagged as uncorrectable (transport_error_indicator)."""
    continuity_errors: int = 0
    """Packets missing on a PSI or audio PID (continuity counter jumps)."""
    bad_sections: int = 0
    """PSI sections whose CRC-32 did not match."""


@dataclasses.dataclass(frozen=True)
class UtcAnchor:
    utc: float
    """UTC epoch seconds from the last TDT/TOT."""
    pts: dict[int, int]
    """Last PES PTS (33-bit, 90 kHz) per audio PID when it arrived."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """The CRC of PSI sections (a whole section including its CRC gives 0)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ byte]
    return crc


def dvb_time(field: bytes) -> float:
    """The 40-bit UTC_time of a TDT/TOT (MJD + BCD hh mm ss) as UTC epoch seconds."""
    mjd = field[0] << 8 | field[1]
    bcd = [(b >> 4) * 10 + (b & 0x0F) for b in field[2:5]]
    day = datetime.datetime(1858, 11, 17, tzinfo=datetime.UTC) + datetime.timedelta(days=mjd)
    return day.timestamp() + bcd[0] * 3600 + bcd[1] * 60 + bcd[2]


def dvb_text(raw: bytes) -> str:
    """A DVB string: a leading byte below 0x20 selects the character table; we read the common ones."""
    if raw[:1] == b"\x15":
        return raw[1:].decode("utf-8", "replace")
    if raw and raw[0] < 0x20:
        raw = raw[3:] if raw[0] == 0x10 else raw[1:]
    return "".join(ch for ch in raw.decode("latin-1") if ch >= " " and not "\x80" <= ch <= "\x9f")


class PsiMonitor:
    """Feed it the transport stream in any slices; read `services`, `generation`, `anchor`, `counters`."""

    def __init__(self) -> None:
        self.services: dict[int, Service] = {}
        self.generation = 0
        """Changes whenever `services` changes (PAT, PMT or SDT update)."""
        self.anchor: UtcAnchor | None = None
        self.counters = TsCounters()
        self._rest = b""
        self._sections: dict[int, bytearray] = {}
        self._last_raw: dict[tuple[int, int, int], bytes] = {}
        self._cc: dict[int, int] = {}
        self._pts: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._psi_pids = {PAT_PID, SDT_PID, TIME_PID}
        self._audio_pids: set[int] = set()

    def feed(self, data: bytes) -> None:
        data = self._rest + data
        start = 0
        while len(data) - start >= PACKET:
            if data[start] != SYNC:
                start = self._resync(data, start)
                continue
            packets = np.frombuffer(data, np.uint8, count=(len(data) - start) // PACKET * PACKET,
                                    offset=start).reshape(-1, PACKET)
            lost = np.flatnonzero(packets[:, 0] != SYNC)
            count = int(lost[0]) if lost.size else len(packets)
            self._packets(packets[:count])
            start += count * PACKET
        self._rest = data[start:]

    def _resync(self, data: bytes, start: int) -> int:
        """The next offset where two sync bytes lie one packet apart (or the end of what we have)."""
        self.counters.sync_losses += 1
        position = data.find(b"\x47", start + 1)
        while position >= 0 and position + PACKET < len(data) and data[position + PACKET] != SYNC:
            position = data.find(b"\x47", position + 1)
        return position if position >= 0 else len(data)

    def _packets(self, packets: np.ndarray) -> None:
        """A run of aligned packets: counters for all, Python-level parsing only for PIDs we watch."""
        self.counters.packets += len(packets)
        pids = (packets[:, 1].astype(np.int32) & 0x1F) << 8 | packets[:, 2]
        self.counters.transport_errors += int(np.count_nonzero(packets[:, 1] & 0x80))
        start = 0
        while start < len(packets):
            watched = self._psi_pids | self._audio_pids
            for index in np.flatnonzero(np.isin(pids[start:], list(watched))) + start:
                self._packet(packets[index].tobytes(), int(pids[index]))
                if self._psi_pids | self._audio_pids != watched:  # a PAT or PMT named new PIDs
                    start = index + 1
                    break
            else:
                return

    def _packet(self, packet: bytes, pid: int) -> None:
        if packet[1] & 0x80:
            self._cc.pop(pid, None)  # damaged: counted, not parsed, and its counter is not to be trusted
            return
        control, cc = packet[3] >> 4 & 3, packet[3] & 0x0F
        offset = 4
        if control & 2:
            if packet[4] and packet[5] & 0x80:  # discontinuity_indicator: the counter may jump
                self._cc.pop(pid, None)
            offset += 1 + packet[4]
        if not control & 1 or offset >= PACKET:
            return
        last = self._cc.get(pid)
        if last is not None and cc != (last + 1) & 0x0F:
            if cc == last:
                return  # a legal duplicate
            self.counters.continuity_errors += 1
            self._sections.pop(pid, None)
        self._cc[pid] = cc
        payload = packet[offset:]
        start_unit = bool(packet[1] & 0x40)
        if pid in self._audio_pids:
            if start_unit and payload[:3] == b"\x00\x00\x01" and len(payload) >= 14 and payload[7] & 0x80:
                p = payload[9:14]
                self._pts[pid] = (p[0] >> 1 & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
            return
        self._section_bytes(pid, payload, start_unit)

    def _section_bytes(self, pid: int, payload: bytes, start_unit: bool) -> None:
        if start_unit:
            pointer = payload[0]
            if pid in self._sections:
                self._sections[pid] += payload[1 : 1 + pointer]
                self._sections_ready(pid)
            self._sections[pid] = bytearray(payload[1 + pointer :])
        elif pid in self._sections:
            self._sections[pid] += payload
        else:
            return
        self._sections_ready(pid)

    def _sections_ready(self, pid: int) -> None:
        buffer = self._sections[pid]
        while len(buffer) >= 3 and buffer[0] != 0xFF:
            length = 3 + ((buffer[1] & 0x0F) << 8 | buffer[2])
            if len(buffer) < length:
                return
            section = bytes(buffer[:length])
            del buffer[:length]
            self._section(pid, section)
        if buffer[:1] == b"\xff":
            buffer.clear()

    def _section(self, pid: int, section: bytes) -> None:
        table = section[0]
        if table in (0x70, 0x73) and pid == TIME_PID:
            if table == 0x73 and crc32_mpeg2(section):
                self.counters.bad_sections += 1
                return
            self.anchor = UtcAnchor(dvb_time(section[3:8]), dict(self._pts))
            return
        if not section[1] & 0x80 or len(section) < 12:
            return
        key = (pid, table, section[3] << 8 | section[4])
        if self._last_raw.get(key) == section:
            return  # repeated unchanged: most sections are
        if crc32_mpeg2(section):
            self.counters.bad_sections += 1
            return
        body = section[8:-4]
        if table == 0x00 and pid == PAT_PID:
            self._pat(body)
        elif table == 0x02:
            if not self._pmt(pid, key[2], (section[5] >> 1) & 0x1F, body):
                return  # before its PAT: read it again when it repeats
        elif table == 0x42 and pid == SDT_PID:
            self._sdt(body)
        self._last_raw[key] = section

    def _pat(self, body: bytes) -> None:
        programs = {}
        for i in range(0, len(body) - 3, 4):
            number, pmt_pid = body[i] << 8 | body[i + 1], (body[i + 2] & 0x1F) << 8 | body[i + 3]
            if number:
                programs[number] = pmt_pid
        old = self.services
        self.services = {sid: old[sid] if sid in old and old[sid].pmt_pid == pmt
                         else Service(sid, pmt, self._names.get(sid)) for sid, pmt in programs.items()}
        self._psi_pids = {PAT_PID, SDT_PID, TIME_PID, *programs.values()}
        self._changed()

    def _pmt(self, pid: int, service_id: int, version: int, body: bytes) -> bool:
        service = self.services.get(service_id)
        if service is None or service.pmt_pid != pid:
            return False
        info_length = (body[2] & 0x0F) << 8 | body[3]
        tracks, i = [], 4 + info_length
        while i + 5 <= len(body):
            stream_type, es_pid = body[i], (body[i + 1] & 0x1F) << 8 | body[i + 2]
            es_length = (body[i + 3] & 0x0F) << 8 | body[i + 4]
            codec, language = AUDIO_STREAM_TYPES.get(stream_type), None
            for tag, value in _descriptors(body[i + 5 : i + 5 + es_length]):
                if tag == 0x0A and len(value) >= 3:
                    language = value[:3].decode("latin-1").lower()
                elif stream_type == 0x06 and tag in AUDIO_DESCRIPTORS:
                    codec = AUDIO_DESCRIPTORS[tag]
            if codec:
                tracks.append(Track(es_pid, codec, language))
            i += 5 + es_length
        self.services[service_id] = dataclasses.replace(service, version=version, tracks=tuple(tracks))
        self._changed()
        return True

    def _sdt(self, body: bytes) -> None:
        i = 3  # original_network_id, reserved
        changed = False
        while i + 5 <= len(body):
            service_id = body[i] << 8 | body[i + 1]
            loop_length = (body[i + 3] & 0x0F) << 8 | body[i + 4]
            for tag, value in _descriptors(body[i + 5 : i + 5 + loop_length]):
                if tag == 0x48 and len(value) >= 3:
                    provider_length = value[1]
                    name_length = value[2 + provider_length]
                    name = dvb_text(value[3 + provider_length : 3 + provider_length + name_length])
                    self._names[service_id] = name
                    if service_id in self.services and self.services[service_id].name != name:
                        self.services[service_id] = dataclasses.replace(self.services[service_id], name=name)
                        changed = True
            i += 5 + loop_length
        if changed:
            self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self._audio_pids = {t.pid for s in self.services.values() for t in s.tracks}


def _descriptors(loop: bytes) -> list[tuple[int, bytes]]:
    found, i = [], 0
    while i + 2 <= len(loop):
        found.append((loop[i], loop[i + 2 : i + 2 + loop[i + 1]]))
        i += 2 + loop[i + 1]
    return found
