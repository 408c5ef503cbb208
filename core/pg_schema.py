"""PostgreSQL schema as ordered migrations, tracked in `schema_migrations`; applied under one advisory lock so
replicas opening an empty database at the same moment wait for one of them instead of racing."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "MIGRATION_LOCK", "SETTINGS_CHANNEL", "SETTINGS_NOTIFY"]

MIGRATION_LOCK = 0x5570_707A  # pg_advisory_lock key held while migrating ("Uppz")
SETTINGS_CHANNEL = "uppzy_settings"  # LISTEN/NOTIFY channel: "platform\tworkspace_id" when settings change
# Appended to a workspace write: the other replicas drop their cached copy of that workspace ($1 platform, $2 id).
SETTINGS_NOTIFY = f"SELECT pg_notify('{SETTINGS_CHANNEL}', $1::text || E'\\t' || $2::text)"

MIGRATIONS: tuple[str, ...] = (
    # 1: the SQLite schema in PostgreSQL types, plus holders, replicas' leases and singleton-job leases.
    """
    CREATE TABLE sessions (
        id text PRIMARY KEY,
        key text NOT NULL,
        generation integer NOT NULL,
        platform text NOT NULL,
        workspace_id text NOT NULL,
        site_id text NOT NULL,
        state text NOT NULL,
        created_at double precision NOT NULL,
        last_activity double precision NOT NULL,
        idle_timeout double precision NOT NULL,
        closed_at double precision,
        close_reason text,
        last_turn_id bigint
    );
    CREATE UNIQUE INDEX sessions_open_key ON sessions (key) WHERE state = 'open';
    CREATE INDEX sessions_idle ON sessions ((last_activity + idle_timeout)) WHERE state = 'open';
    CREATE INDEX sessions_workspace ON sessions (platform, workspace_id) WHERE state = 'open';
    CREATE INDEX sessions_closing ON sessions (last_activity) WHERE state = 'closing';
    CREATE INDEX sessions_key_generation ON sessions (key, generation);
    CREATE INDEX sessions_closed ON sessions (closed_at) WHERE state = 'closed';
    CREATE TABLE turns (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        platform text NOT NULL,
        workspace_id text NOT NULL,
        channel_id text NOT NULL,
        message_channel_id text NOT NULL,
        message_id text NOT NULL,
        thread_id text,
        user_id text NOT NULL,
        is_dm boolean NOT NULL DEFAULT false,
        extras text NOT NULL DEFAULT '[]',
        event_key text NOT NULL,
        session_id text NOT NULL,
        site_id text NOT NULL,
        email text,
        text text,
        state text NOT NULL,
        request_id text,
        answer text,
        confidence_score double precision,
        confidence_level text,
        error_kind text,
        notice_kind text,
        notice text,
        created_at double precision NOT NULL,
        submitted_at double precision,
        ready_at double precision,
        done_at double precision,
        holder text,
        UNIQUE (platform, event_key)
    );
    CREATE INDEX turns_unfinished ON turns (holder, id) WHERE state NOT IN ('answered', 'failed');
    CREATE INDEX turns_due ON turns (holder, (COALESCE(ready_at, 0)), id) WHERE state IN ('ready', 'delivering');
    CREATE INDEX turns_session ON turns (session_id, id);
    CREATE INDEX turns_done ON turns (done_at);
    CREATE INDEX turns_thread ON turns (platform, channel_id, thread_id);
    CREATE INDEX turns_message ON turns (platform, channel_id, message_id);
    CREATE TABLE answer_messages (
        platform text NOT NULL,
        message_id text NOT NULL,
        channel_id text NOT NULL,
        turn_id bigint NOT NULL,
        PRIMARY KEY (platform, message_id, channel_id)
    );
    CREATE INDEX answer_messages_turn ON answer_messages (turn_id);
    CREATE TABLE feedback (
        turn_id bigint PRIMARY KEY,
        rating text NOT NULL,
        user_id text NOT NULL,
        source text NOT NULL,
        state text NOT NULL,
        at double precision NOT NULL
    );
    CREATE TABLE workspace_settings (
        platform text NOT NULL,
        workspace_id text NOT NULL,
        key text NOT NULL,
        value text NOT NULL,
        updated_by text,
        updated_at double precision NOT NULL,
        PRIMARY KEY (platform, workspace_id, key)
    );
    CREATE TABLE channel_modes (
        platform text NOT NULL,
        workspace_id text NOT NULL,
        channel_id text NOT NULL,
        mode text NOT NULL,
        updated_by text,
        updated_at double precision NOT NULL,
        PRIMARY KEY (platform, workspace_id, channel_id)
    );
    CREATE TABLE replicas (
        id text PRIMARY KEY,
        lease_until double precision NOT NULL,
        started_at double precision NOT NULL
    );
    CREATE TABLE leases (
        job text PRIMARY KEY,
        holder text NOT NULL,
        until double precision NOT NULL
    );
    CREATE TABLE store_probe (
        holder text PRIMARY KEY,
        n bigint NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 2: recording a question in one round trip: dedup, the key's open session, the turn and its holder.
    """
    CREATE FUNCTION uppzy_record_question(
        p_key text, p_new_session text, p_new_generation integer, p_platform text, p_workspace_id text,
        p_channel_id text, p_message_channel_id text, p_message_id text, p_thread_id text, p_user_id text,
        p_is_dm boolean, p_extras text, p_event_key text, p_site_id text, p_email text, p_text text,
        p_idle_timeout double precision, p_now double precision, p_holder text,
        OUT status text, OUT turn_id bigint, OUT session_id text, OUT next_generation integer)
    LANGUAGE plpgsql AS $$
    #variable_conflict use_variable
    BEGIN
        -- One conversation key at a time across every process: no two sessions, ids grow with arrival.
        PERFORM pg_advisory_xact_lock(hashtext('uppzy_key:' || p_key));
        IF EXISTS (SELECT 1 FROM turns t WHERE t.platform = p_platform AND t.event_key = p_event_key) THEN
            status := 'duplicate';
            RETURN;
        END IF;
        SELECT s.id INTO session_id FROM sessions s WHERE s.key = p_key AND s.state = 'open';
        IF session_id IS NULL THEN
            SELECT COALESCE(max(s.generation), 0) + 1 INTO next_generation FROM sessions s WHERE s.key = p_key;
            IF p_new_session IS NULL OR next_generation <> p_new_generation THEN
                status := 'name';  -- core names sessions (core.session_ids): ask again with this generation's id
                RETURN;
            END IF;
            INSERT INTO sessions (id, key, generation, platform, workspace_id, site_id, state, created_at,
                                  last_activity, idle_timeout)
            VALUES (p_new_session, p_key, next_generation, p_platform, p_workspace_id, p_site_id, 'open', p_now,
                    p_now, p_idle_timeout);
            session_id := p_new_session;
            status := 'opened';
        ELSE
            status := 'joined';
        END IF;
        INSERT INTO turns (platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, user_id,
                           is_dm, extras, event_key, session_id, site_id, email, text, state, created_at, holder)
        VALUES (p_platform, p_workspace_id, p_channel_id, p_message_channel_id, p_message_id, p_thread_id,
                p_user_id, p_is_dm, p_extras, p_event_key, session_id, p_site_id, p_email, p_text, 'queued', p_now,
                p_holder)
        RETURNING id INTO turn_id;
        UPDATE sessions s SET last_activity = p_now, last_turn_id = turn_id WHERE s.id = session_id;
    END $$;
    """,
    # 3: the shared call budgets: a ledger of grants, granted under one advisory lock per budget name.
    """
    CREATE TABLE budget_grants (
        name text NOT NULL,
        tokens integer NOT NULL,
        ends double precision NOT NULL
    );
    CREATE INDEX budget_grants_name_ends ON budget_grants (name, ends);
    CREATE FUNCTION uppzy_budget_grant(p_name text, p_want integer, p_rate double precision,
                                       p_valid double precision, p_pause double precision,
                                       OUT granted integer, OUT wait double precision)
    LANGUAGE plpgsql AS $$
    #variable_conflict use_variable
    DECLARE
        now_s double precision;
        cap integer := CASE WHEN p_rate >= 1 THEN floor(p_rate)::integer ELSE 1 END;
        span double precision := CASE WHEN p_rate >= 1 THEN 1.0 ELSE 1.0 / p_rate END;
        used integer;
        oldest double precision;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('uppzy_budget:' || p_name));
        now_s := extract(epoch FROM clock_timestamp());  -- the database's clock: replicas' clocks may differ
        DELETE FROM budget_grants g WHERE g.name = p_name AND g.ends <= now_s - span;
        IF p_pause IS NOT NULL THEN  -- slow down: a full window's worth that ends `p_pause` seconds from now
            INSERT INTO budget_grants (name, tokens, ends) VALUES (p_name, cap, now_s + greatest(0, p_pause - span));
        END IF;
        SELECT COALESCE(sum(g.tokens), 0), min(g.ends) INTO used, oldest
            FROM budget_grants g WHERE g.name = p_name AND g.ends > now_s - span;
        granted := greatest(0, least(p_want, cap - used));
        IF granted > 0 THEN
            INSERT INTO budget_grants (name, tokens, ends) VALUES (p_name, granted, now_s + p_valid);
            used := used + granted;
            oldest := COALESCE(oldest, now_s + p_valid);
        END IF;
        wait := CASE WHEN used < cap THEN 0 ELSE greatest(0, oldest + span - now_s) END;
    END $$;
    """,
    # 4: when a session's close was claimed: only a close claimed a while ago is resumed (one in flight on another
    # replica is not closed twice).
    """
    ALTER TABLE sessions ADD COLUMN closing_at double precision;
    """,
    # 5: many workspaces (issue 12): Slack installations, OAuth states, per-workspace Uppzy credentials, secrets
    # sealed with SECRETS_KEY; '' stands for "no enterprise" and an org-wide install's "no team" (as in SQLite).
    """
    CREATE TABLE installations (
        enterprise_id text NOT NULL,
        team_id text NOT NULL,
        sealed text NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (enterprise_id, team_id)
    );
    CREATE TABLE oauth_states (
        state text PRIMARY KEY,
        expires_at double precision NOT NULL
    );
    CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
    CREATE TABLE workspace_credentials (
        platform text NOT NULL,
        workspace_id text NOT NULL,
        site_id text NOT NULL,
        sealed_key text NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (platform, workspace_id)
    );
    """,
)
