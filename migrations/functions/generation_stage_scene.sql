-- Add a scene to an act of a paid project, staged under its hold, and answer where it lands in the act (NULL:
-- no such project of this user). One round trip: the project's row is locked first, so scenes added to one
-- project are numbered one at a time, and each statement after the lock sees every scene committed before it
-- (plpgsql takes a new snapshot per statement). A scene lands after the newest scene list of the act staged
-- before it and the scenes added since, counting those that are paid or may still be (a pending hold).
CREATE FUNCTION generation_stage_scene(
    p_project_path text, p_user_id bigint, p_act_key text, p_payload jsonb, p_hold_id uuid
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    project bigint;
    part bigint;
    base_id bigint;
    base_scenes integer;
BEGIN
    SELECT p.id INTO project FROM projects p
    WHERE p.project_path = p_project_path AND p.user_id = p_user_id AND generation_paid(p.hold_id, p.settled)
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO project_parts (project_id, kind, act_key, payload, hold_id)
    VALUES (project, 'scene', p_act_key, p_payload, p_hold_id) RETURNING id INTO part;
    SELECT pp.id, jsonb_array_length(pp.payload) INTO base_id, base_scenes FROM project_parts pp
    WHERE pp.project_id = project AND pp.kind = 'scenes' AND pp.act_key = p_act_key AND pp.id < part
      AND NOT EXISTS (SELECT 1 FROM hold_outcomes o WHERE o.hold_id = pp.hold_id AND o.outcome <> 'posted')
    ORDER BY pp.id DESC LIMIT 1;
    RETURN COALESCE(base_scenes, 0) + (
        SELECT count(*) FROM project_parts pp
        WHERE pp.project_id = project AND pp.kind = 'scene' AND pp.act_key = p_act_key AND pp.id < part
          AND pp.id > COALESCE(base_id, 0)
          AND NOT EXISTS (SELECT 1 FROM hold_outcomes o WHERE o.hold_id = pp.hold_id AND o.outcome <> 'posted'));
END
$$;
