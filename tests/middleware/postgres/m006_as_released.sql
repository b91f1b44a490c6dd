-- Migration m006_pg_chain_append as released (guardbot at 08f344e: postgres/append.py's
-- FUNCTIONS_SQL, rendered): guardbot_links, the JSON guardbot_append and the deferrable
-- foreign keys. A fixture of what released databases hold; never edited.

-- chain.link_v2: H(json([2, kind, seq, prev_sha256, content])) for each content in turn.
CREATE FUNCTION guardbot_links(kind text, after_seq bigint, prev text, contents text[])
RETURNS text[] LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    links text[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(contents, 1), 0) LOOP
        prev := encode(sha256(convert_to('[2,"' || kind || '",' || (after_seq + i) || ',"'
                                         || prev || '","' || contents[i] || '"]', 'UTF8')), 'hex');
        links := links || prev;
    END LOOP;
    RETURN links;
END $$;

CREATE FUNCTION guardbot_append(
    d_json jsonb, v_json jsonb, c_json jsonb, l_json jsonb, e_json jsonb,
    OUT wait_s double precision, OUT held_s double precision
) LANGUAGE plpgsql AS $$
DECLARE
    asked timestamptz;
    locked timestamptz;
    head_seq bigint;
    head_sha text;
    links text[];
    added integer;
BEGIN
    -- The verdicts, candidates and model calls carry no link: written before the lock,
    -- their decisions' existence checked at COMMIT (still under the lock).
    SET CONSTRAINTS verdicts_decision_id_fkey, candidates_decision_id_fkey,
        llm_calls_decision_id_fkey DEFERRED;
    INSERT INTO verdicts (decision_id, position, guard, stage, candidate_index, outcome, blocking, category, score, confidence, reason, latency_ms, model, tokens_in, tokens_out, raw_output, members_json)
    SELECT decision_id, position, guard, stage, candidate_index, outcome, blocking, category, score, confidence, reason, latency_ms, model, tokens_in, tokens_out, raw_output, members_json FROM jsonb_populate_recordset(NULL::verdicts, v_json);
    INSERT INTO candidates (decision_id, candidate_index, text_chars, text_sha256, model, temperature, latency_ms, tokens_in, tokens_out, score, chosen, safe, error, text)
    SELECT decision_id, candidate_index, text_chars, text_sha256, model, temperature, latency_ms, tokens_in, tokens_out, score, chosen, safe, error, text FROM jsonb_populate_recordset(NULL::candidates, c_json);
    INSERT INTO llm_calls (decision_id, position, purpose, model, tokens_in, tokens_out, latency_ms, error)
    SELECT decision_id, position, purpose, model, tokens_in, tokens_out, latency_ms, error FROM jsonb_populate_recordset(NULL::llm_calls, l_json);
    asked := clock_timestamp();
    PERFORM pg_advisory_xact_lock(7454971902120062836);
    locked := clock_timestamp();
    SELECT seq, sha256 INTO head_seq, head_sha FROM chain_head WHERE id = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the chain head row is missing; run `guardbot verify`'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    links := guardbot_links('decision', head_seq, head_sha, ARRAY(
        SELECT item ->> 'content_sha256' FROM jsonb_array_elements(d_json) WITH ORDINALITY AS a(item, n)
        ORDER BY n));
    INSERT INTO decisions (seq, id, created_utc, received_utc, platform, channel_id, thread_id, user_id, user_name, message_id, history_turns, text_chars, text_sha256, action, reply_chars, reply_sha256, blocked_by, error, selection_method, selection_json, total_ms, input_guards_ms, generation_ms, output_guards_ms, selection_ms, saved_ms, tokens_in, tokens_out, cost_usd, config_fingerprint, text, reply, rows_sha256_json, prev_sha256, sha256)
    SELECT seq, id, created_utc, received_utc, platform, channel_id, thread_id, user_id, user_name, message_id, history_turns, text_chars, text_sha256, action, reply_chars, reply_sha256, blocked_by, error, selection_method, selection_json, total_ms, input_guards_ms, generation_ms, output_guards_ms, selection_ms, saved_ms, tokens_in, tokens_out, cost_usd, config_fingerprint, text, reply, rows_sha256_json, prev_sha256, sha256 FROM jsonb_array_elements(d_json) WITH ORDINALITY AS a(item, n),
        jsonb_populate_record(NULL::decisions, item || jsonb_build_object(
            'seq', head_seq + n, 'prev_sha256', coalesce(links[n - 1], head_sha),
            'sha256', links[n])) AS r
    ORDER BY n;
    INSERT INTO decisions_fts (rowid, text, reply)
    SELECT seq, text, reply FROM decisions WHERE seq > head_seq ORDER BY seq;
    added := jsonb_array_length(d_json);
    head_seq := head_seq + added;
    head_sha := coalesce(links[added], head_sha);
    links := guardbot_links('delivery', head_seq, head_sha, ARRAY(
        SELECT item ->> 'content_sha256' FROM jsonb_array_elements(e_json) WITH ORDINALITY AS a(item, n)
        ORDER BY n));
    INSERT INTO deliveries (decision_id, created_utc, status, error, seq, prev_sha256, sha256)
    SELECT decision_id, created_utc, status, error, seq, prev_sha256, sha256 FROM jsonb_array_elements(e_json) WITH ORDINALITY AS a(item, n),
        jsonb_populate_record(NULL::deliveries, item || jsonb_build_object(
            'seq', head_seq + n, 'prev_sha256', coalesce(links[n - 1], head_sha),
            'sha256', links[n])) AS r
    ORDER BY n;
    added := jsonb_array_length(e_json);
    head_seq := head_seq + added;
    head_sha := coalesce(links[added], head_sha);
    UPDATE chain_head SET seq = head_seq, sha256 = head_sha WHERE id = 1;
    wait_s := extract(epoch FROM locked - asked);
    held_s := extract(epoch FROM clock_timestamp() - locked);  -- COMMIT not included
END $$;
ALTER TABLE verdicts ALTER CONSTRAINT verdicts_decision_id_fkey DEFERRABLE;
ALTER TABLE candidates ALTER CONSTRAINT candidates_decision_id_fkey DEFERRABLE;
ALTER TABLE llm_calls ALTER CONSTRAINT llm_calls_decision_id_fkey DEFERRABLE;
