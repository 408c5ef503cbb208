"""Platform-neutral core of uppzy-chat-bot: Uppzy client, relay, store. Never imports a chat platform."""
