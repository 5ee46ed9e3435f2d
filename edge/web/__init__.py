"""The web app under /app: server-rendered pages (Jinja2) with htmx, for writers, paying users and admins.

Every page gets its data and performs its actions by calling the REST routes' own functions (edge/routes/),
so a page and an API client see the same validation, the same metered pipeline and the same errors."""
