"""The terminal as a chat platform: the console adapter and `uppzy-bot demo`."""
