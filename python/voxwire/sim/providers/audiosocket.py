"""Asterisk AudioSocket, as Asterisk speaks it.

https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket: type-length-value
messages over TCP (a type byte, a big-endian 16-bit length, the payload): the call's UUID,
then slin audio frames, then a hangup. There are no marks and no clear on the wire.
"""

from __future__ import annotations

import uuid

from voxwire.protocols.audiosocket import AudioSocketCodec
from voxwire.sim.providers.base import ProviderSide, is_uuid, l16
from voxwire.sim.providers.events import PCM, Message, PhoneEvent, PlayAudio

__all__ = ["AudioSocketSide", "tlv"]

HANGUP = 0x00
UUID = 0x01
#: the signed-linear audio type of each rate (the AudioSocket README's table)
SLIN = {
    8000: 0x10,
    12000: 0x11,
    16000: 0x12,
    24000: 0x13,
    32000: 0x14,
    44100: 0x15,
    48000: 0x16,
    96000: 0x17,
    192000: 0x18,
}


def tlv(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


class AudioSocketSide(ProviderSide):
    """Asterisk's side of an AudioSocket call; :meth:`parse` takes any chunk of the stream.

    ``hung_up`` turns true when the application sends the hangup message.
    """

    codec = AudioSocketCodec

    def _begin(self) -> None:
        super()._begin()
        self._pending = bytearray()
        self.hung_up = False

    @property
    def ident(self) -> uuid.UUID:
        """The call's UUID, as the opening message carries it."""
        return (
            uuid.UUID(self.call_id)
            if is_uuid(self.call_id)
            else uuid.uuid5(uuid.NAMESPACE_URL, self.call_id)
        )

    def opening(self) -> list[Message]:
        return [tlv(UUID, self.ident.bytes)]

    def audio(self, pcm: PCM) -> Message:
        return tlv(SLIN[self.rate], pcm.astype("<i2").tobytes())

    def closing(self) -> list[Message]:
        return [tlv(HANGUP)]

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, str):
            return self._refuse("AudioSocket is a byte stream")
        self._pending += message
        out: list[PhoneEvent] = []
        while len(self._pending) >= 3:
            kind = self._pending[0]
            length = int.from_bytes(self._pending[1:3], "big")
            if len(self._pending) < 3 + length:
                break
            payload = bytes(self._pending[3 : 3 + length])
            del self._pending[: 3 + length]
            if kind == HANGUP:
                self._require(not payload, f"a hangup carries no payload, got {length} bytes")
                self.hung_up = True
                continue  # the server hung up; the socket closes next
            pcm = l16(payload) if kind == SLIN[self.rate] else None
            if pcm is not None:
                out.append(PlayAudio(pcm))
            else:
                out += self._refuse(f"type 0x{kind:02x}; audio is 0x{SLIN[self.rate]:02x}")
        return out
