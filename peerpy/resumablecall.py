"""A resumable call: what a MediaConnection carries from one peer connection to the next.

Once both sides offered resumption (``peerpyResume`` in the OFFER and the
ANSWER, as for data connections), a call that loses its peer connection goes
on over a new one, negotiated by its
:class:`~peerpy.generation.GenerationSwitch`, for which :class:`ResumableCall`
is the :class:`~peerpy.generation.Carrier`:

- each new generation sends the same local tracks and opens a new auxiliary
  channel; its opening is the generation's opening.  Senders read a local
  track through a :class:`SentTrack` each, so a dying sender (aiortc's stops
  its track when sending fails) leaves the local track live; the tracks end
  with the call;
- the remote's tracks are new ones: the call's :attr:`remote_stream
  <peerpy.mediaconnection.MediaConnection.remote_stream>` is replaced and
  ``stream`` fires again with it, just before ``resumed``;
- a hang-up says *bye* on the auxiliary channel first, so that the remote
  closes instead of resuming when the channel closes.

A PeerJS remote never offers resumption: its calls end with their peer
connection, as in PeerJS.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .generation import GenerationSwitch

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCPeerConnection
    from av.frame import Frame
    from av.packet import Packet

    from .mediaconnection import MediaConnection

__all__ = ["BYE", "ResumableCall", "SentTrack"]

#: What a resumable call's hang-up sends on the auxiliary channel before closing it.
BYE: Final = "peerpy-bye"


class SentTrack(MediaStreamTrack):
    """What one sender reads for a local track: stopping it leaves the local track live.

    Same kind and id (the id the remote sees in the SDP's ``msid``).
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._id = source.id
        #: The application's track.
        self.source = source

    async def recv(self) -> Frame | Packet[Any]:
        """The local track's next frame.  Cancelling cancels its ``recv()``."""
        if self.readyState != "live":
            raise MediaStreamError
        return await self.source.recv()


class ResumableCall:
    """Resumption of one call (see the module)."""

    def __init__(self, call: MediaConnection, logger: logging.Logger) -> None:
        self._call = call
        #: Moves the call to new peer connections.
        self.switch = GenerationSwitch(call, self, logger)
        #: Whether the remote said bye: its channel closing is a hang-up.
        self.bye_received = False

    @property
    def reconnecting(self) -> bool:
        """Whether the call is resuming on a new peer connection."""
        return self.switch.active

    def send_bye(self) -> bool:
        """Say bye on the auxiliary channel (hanging up); whether it was sent."""
        channel = self._call._channel
        if channel is None or channel.readyState != "open" or self.reconnecting:
            return False
        with contextlib.suppress(Exception):
            channel.send(BYE)
            return True
        return False

    # -- the generation switch's carrier ------------------------------------

    @property
    def window(self) -> int:
        """Nothing is held unacknowledged: media lost with the path is not sent again."""
        return 0

    def detach(self) -> None:
        """The auxiliary channel is lost (its closing is no hang-up any more)."""
        self._call._channel = None

    def adopt(self, pc: RTCPeerConnection, old: RTCPeerConnection) -> None:
        """Take ``pc``'s remote tracks (``old``'s senders read :class:`SentTrack` s)."""
        self._call._follow(pc)

    def offer_on(self, pc: RTCPeerConnection) -> dict[str, Any]:
        """The local tracks and a new auxiliary channel on ``pc``; a call's OFFER has no fields."""
        self._call._put_media(pc)
        return {}

    def answer_on(self, pc: RTCPeerConnection) -> None:
        """Send our local tracks on ``pc`` again."""
        self._call._send_tracks(pc)

    def resume_on(self, channel: RTCDataChannel) -> bool:
        """Nothing to catch up on: media goes on from now."""
        return True

    def resumed(self) -> None:
        """Announce the remote's new stream."""
        call = self._call
        if call._remote_stream is not None and call._remote_stream.tracks:
            call._events.emit("stream", call._remote_stream)
