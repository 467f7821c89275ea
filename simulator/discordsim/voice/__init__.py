"""The simulator's voice side: TLS voice gateway, UDP media, scripted participants.

Start with :class:`VoiceServer`; scenarios live in :mod:`discordsim.scenarios`; the DAVE
delivery service plugs in as a :class:`DaveDelivery` strategy.

Record kinds the voice side writes (``conn`` is a voice WebSocket id such as ``"v3"``;
tokens appear only as :func:`discordsim.record.fingerprint`, secret keys never):

``voice.server_start`` / ``voice.server_stop`` / ``voice.lifetime_expired``
``voice.listen_443``    whether the port-443 listener was bound (``bound``, ``reason``)
``voice.grant`` / ``voice.revoke``   tokens issued (``user_id``, ``endpoint``) and withdrawn
``voice.connect``       a WebSocket opened (``listener``: primary/failover/port-443,
                        ``port``, ``v``)
``voice.op``            the client sent an op (``op``, ``d``; ``binary`` length for binary frames)
``voice.send``          the server sent an op (``op``, ``d``, ``seq``)
``voice.close``         a WebSocket closed (``code``, ``by``: server/client)
``voice.identify``      a session was created (``ssrc``, ``version``, ``dave_max``,
                        ``dave_version``)
``voice.select``        Select Protocol accepted (``mode``, ``address``)
``voice.seq_ack``       a v8 heartbeat's ``seq_ack``
``voice.resumed``       a Resume took over session ``session`` and replayed ``replayed`` messages
``voice.speaking``      the client's op 5 (``speaking``)
``voice.session_end`` / ``voice.session_expired``   a session is gone for good
``voice.crash`` / ``voice.kick`` / ``voice.failover`` (``endpoint``, ``token``, ``dispatched``)
``voice.discovery``     an IP discovery request (``ssrc``, ``address`` observed)
``voice.keepalive``     8-byte keepalives (the 1st and every 50th, with ``count``)
``voice.rtp_in``        a decrypted client packet (``ssrc``, ``seq``, ``timestamp``, ``size``,
                        ``silence``, ``before_speaking``)
``voice.rtp_out``       a forwarded packet's fate (``ssrc``, ``seq``, ``action``: sent, dropped,
                        held (sent after the next one), duplicated)
``voice.rtcp_in`` / ``voice.rtcp_out``   RTCP (``pt``)
``voice.udp_drop``      a datagram counted and dropped (``reason``)
``voice.participant_join`` / ``_leave`` / ``_speak`` / ``_done`` (``user_id``, ``sent``)
``voice.dave_ignored``  a DAVE op the transport-only strategy ignored
"""

from discordsim.voice.dave import DaveDelivery, TransportOnly
from discordsim.voice.participants import ParticipantSpec, load_script
from discordsim.voice.server import VoiceServer

__all__ = ["DaveDelivery", "ParticipantSpec", "TransportOnly", "VoiceServer", "load_script"]
