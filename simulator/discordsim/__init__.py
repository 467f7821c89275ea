"""discordsim: a Discord in a box on loopback, for testing bots offline."""
