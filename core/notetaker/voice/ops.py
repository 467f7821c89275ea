"""The voice gateway's opcodes, version 8 (voice-protocol.md section 2.3)."""

from __future__ import annotations

OP_IDENTIFY = 0
OP_SELECT_PROTOCOL = 1
OP_READY = 2
OP_HEARTBEAT = 3
OP_SESSION_DESCRIPTION = 4
OP_SPEAKING = 5
OP_HEARTBEAT_ACK = 6
OP_RESUME = 7
OP_HELLO = 8
OP_RESUMED = 9
OP_CLIENTS_CONNECT = 11
OP_VIDEO = 12
OP_CLIENT_DISCONNECT = 13
OP_CLIENT_FLAGS = 18
OP_CLIENT_PLATFORM = 20
#: DAVE opcodes, JSON (21-24, 31 from the client) and binary (25-30).
DAVE_OPS = range(21, 32)
