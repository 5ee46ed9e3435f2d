-- A part's kind is whatever the generation kind that saved it calls it (services/generation/kinds.py), so
-- the table does not list them: a new kind needs no migration. A part with no act (act_key '') belongs to
-- the whole project, such as its cast.
ALTER TABLE project_parts DROP CONSTRAINT project_parts_kind_check;
ALTER TABLE project_parts ADD CONSTRAINT project_parts_kind_format CHECK (kind ~ '^[a-z][a-z_]{0,63}$');
