-- Generation service: a writer's projects. The story's hierarchy (structure → plot points → scenes →
-- dialogue) is kept as JSON documents keyed by act key, in the template's act order.
CREATE TABLE projects (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint      NOT NULL,
    project_path  text        NOT NULL UNIQUE CHECK (project_path ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
    title         text        NOT NULL,
    story_input   jsonb       NOT NULL,
    template      jsonb       NOT NULL,
    structure     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    plot_points   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    scenes        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    dialogue      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_user_id_idx ON projects (user_id, created_at DESC);
