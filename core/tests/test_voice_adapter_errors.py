"""The library voice adapter raises only VoiceError, which the supervisor's policy treats
as a failed attempt: a guild the bot is not in, a channel that is gone, and whatever the
library itself raises while connecting (stand-ins for the library's client below; the
real libraries run the adapter in the contract suite)."""

from __future__ import annotations

from typing import Any

import pytest

from notetaker.bridge import LibraryVoiceAdapter
from notetaker.errors import VoiceError
from notetaker.supervisor import _LINK_ERRORS


class Proto:
    def __init__(self, client: Any, channel: Any) -> None:
        self.client, self.channel = client, channel


class Channel:
    def __init__(self, fails: BaseException | None = None) -> None:
        self.fails = fails

    async def connect(self, *, cls: Any, reconnect: bool) -> None:
        if self.fails is not None:
            raise self.fails


class Guild:
    id = 1
    voice_client = None

    def __init__(self, channel: Channel | None) -> None:
        self.channel = channel

    def get_channel(self, channel_id: int) -> Channel | None:
        return self.channel


class Client:
    def __init__(self, guild: Guild | None) -> None:
        self.guild = guild

    def get_guild(self, guild_id: int) -> Guild | None:
        return self.guild


class ClientException(Exception):
    """What a library raises when it is already connecting, say."""


@pytest.mark.parametrize(
    ("client", "needle"),
    [
        (Client(None), "not in guild 1"),
        (Client(Guild(None)), "no voice channel 5"),
        (Client(Guild(Channel(ClientException("Already connected")))), "Already connected"),
    ],
    ids=["no guild", "no channel", "library error"],
)
async def test_every_failure_to_join_is_a_voice_error(client: Client, needle: str) -> None:
    adapter = LibraryVoiceAdapter(client, 1, Proto)
    with pytest.raises(VoiceError, match=needle) as caught:
        await adapter.send_voice_state(1, 5, False, True)
    assert isinstance(caught.value, _LINK_ERRORS)


async def test_a_join_that_works_raises_nothing() -> None:
    adapter = LibraryVoiceAdapter(Client(Guild(Channel())), 1, Proto)
    await adapter.send_voice_state(1, 5, False, True)
