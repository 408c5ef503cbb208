"""SQLite schema as ordered migrations; PRAGMA user_version says how many an existing file has had."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: tuple[str, ...] = (
    # 1: conversations, questions and the answers posted for them.
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        generation INTEGER NOT NULL,
        platform TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        site_id TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_activity REAL NOT NULL,
        idle_timeout REAL NOT NULL,
        closed_at REAL,
        close_reason TEXT,
        last_turn_id INTEGER
    );
    CREATE UNIQUE INDEX sessions_open_key ON sessions(key) WHERE state = 'open';
    CREATE INDEX sessions_idle ON sessions(state, last_activity + idle_timeout);
    CREATE INDEX sessions_key_generation ON sessions(key, generation);
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        platform TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        message_channel_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        thread_id TEXT,
        user_id TEXT NOT NULL,
        is_dm INTEGER NOT NULL DEFAULT 0,
        extras TEXT NOT NULL DEFAULT '[]',
        event_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        site_id TEXT NOT NULL,
        email TEXT,
        text TEXT,
        state TEXT NOT NULL,
        request_id TEXT,
        answer TEXT,
        confidence_score REAL,
        confidence_level TEXT,
        error_kind TEXT,
        notice_kind TEXT,
        notice TEXT,
        created_at REAL NOT NULL,
        submitted_at REAL,
        ready_at REAL,
        done_at REAL,
        UNIQUE (platform, event_key)
    );
    CREATE INDEX turns_active ON turns(state) WHERE state NOT IN ('answered', 'failed');
    CREATE INDEX turns_session ON turns(session_id, id);
    CREATE INDEX turns_done ON turns(done_at);
    CREATE INDEX turns_thread ON turns(platform, channel_id, thread_id);
    CREATE INDEX turns_message ON turns(platform, message_id);
    CREATE TABLE answer_messages (
        platform TEXT NOT NULL,
        message_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        turn_id INTEGER NOT NULL,
        PRIMARY KEY (platform, message_id, channel_id)
    );
    CREATE INDEX answer_messages_turn ON answer_messages(turn_id);
    CREATE TABLE feedback (
        turn_id INTEGER PRIMARY KEY,
        rating TEXT NOT NULL,
        user_id TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
    # 2: per-workspace settings and per-channel reply modes, written by admin commands.
    """
    CREATE TABLE workspace_settings (
        platform TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_by TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (platform, workspace_id, key)
    );
    CREATE TABLE channel_modes (
        platform TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        updated_by TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (platform, workspace_id, channel_id)
    );
    """,
    # 3: when a session's close was claimed: only a close claimed a while ago is resumed (one in flight is not).
    """
    ALTER TABLE sessions ADD COLUMN closing_at REAL;
    """,
    # 4: many workspaces (issue 12): Slack installations, OAuth states, per-workspace Uppzy credentials. Secrets are
    # stored sealed with SECRETS_KEY (core/secrets_box.py), never in clear. '' stands for "no enterprise" and for an
    # org-wide install's "no team" (a primary key column cannot hold NULL as one value).
    """
    CREATE TABLE installations (
        enterprise_id TEXT NOT NULL,
        team_id TEXT NOT NULL,
        sealed TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (enterprise_id, team_id)
    );
    CREATE TABLE oauth_states (
        state TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    );
    CREATE INDEX oauth_states_expiry ON oauth_states(expires_at);
    CREATE TABLE workspace_credentials (
        platform TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        site_id TEXT NOT NULL,
        sealed_key TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (platform, workspace_id)
    );
    """,
)
