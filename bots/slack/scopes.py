"""The bot scopes the Slack app asks for: the same list as manifest.yml's oauth_config.scopes.bot (a test keeps them
equal). Kept in code because the Docker image ships no manifest.yml; "Add to Slack" requests exactly these."""

__all__ = ["SLACK_SCOPES"]

SLACK_SCOPES = (
    "app_mentions:read", "assistant:write", "channels:history", "chat:write", "chat:write.public", "commands",
    "groups:history", "im:history", "reactions:read", "reactions:write", "users:read", "users:read.email",
)
