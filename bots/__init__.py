"""Channel adapters (Slack, Discord, console) and the `uppzy-bot` entry point."""
