-- Generation service: a project's generated parts as rows, each staged under the hold that pays for it.
--
-- A metered call saves its result before billing posts the hold (nothing can be posted for a result that
-- does not exist yet), so the result is *staged*: a row carrying its hold id, part of the project only once
-- that hold is posted (billing's view hold_outcomes). A voided or expired hold's rows are never seen and
-- are deleted by the generation service's cleanup. Rows without a hold id predate metering (or were paid
-- before this migration) and are always part of the project.
--
-- One row per saved result, never rewritten: saving a scene is one INSERT, not a rewrite of the project's
-- whole JSON document. A project reads as its rows in id order: the newest plot points of an act, the
-- newest scene list of an act followed by the scenes added after it, the newest dialogue of a scene.
ALTER TABLE projects ADD COLUMN hold_id uuid;
ALTER TABLE projects ADD COLUMN settled boolean NOT NULL DEFAULT true;
ALTER TABLE projects ALTER COLUMN settled SET DEFAULT false;

CREATE TABLE project_parts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id   bigint      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind         text        NOT NULL CHECK (kind IN ('plot_points', 'scenes', 'scene', 'dialogue')),
    act_key      text        NOT NULL,
    scene_index  integer     NOT NULL DEFAULT -1,
    payload      jsonb       NOT NULL,
    hold_id      uuid,
    -- false until the cleanup has seen its hold resolved: the cleanup only ever scans unsettled rows.
    settled      boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX project_parts_project_id_idx ON project_parts (project_id, id);
CREATE INDEX project_parts_unsettled_idx ON project_parts (id) WHERE NOT settled;
CREATE INDEX projects_unsettled_idx ON projects (id) WHERE NOT settled;

INSERT INTO project_parts (project_id, kind, act_key, payload, settled)
SELECT p.id, 'plot_points', e.key, e.value, true FROM projects p, jsonb_each(p.plot_points) e ORDER BY p.id, e.key;
INSERT INTO project_parts (project_id, kind, act_key, payload, settled)
SELECT p.id, 'scenes', e.key, e.value, true FROM projects p, jsonb_each(p.scenes) e ORDER BY p.id, e.key;
INSERT INTO project_parts (project_id, kind, act_key, scene_index, payload, settled)
SELECT p.id, 'dialogue', split_part(e.key, ':', 1), split_part(e.key, ':', 2)::integer, e.value, true
FROM projects p, jsonb_each(p.dialogue) e ORDER BY p.id, e.key;

ALTER TABLE projects DROP COLUMN plot_points, DROP COLUMN scenes, DROP COLUMN dialogue;

-- Idempotency-Key records now live with the money (billing's holds, migration 0009).
DROP TABLE idempotent_requests;
