"""The web application: the app, its routes, pages, wording, templates and static files."""
