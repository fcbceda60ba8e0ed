# The service's image: `regimen serve` (web) and `regimen worker` (mail), run as a non-root user.
# Stage 1 builds a virtualenv with the runtime dependencies only (no test or lint tools);
# stage 2 is a slim Python with that virtualenv and the app, and nothing else.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
# Editable: the package finds alembic/, email_templates/ and content/ next to itself in /app.
RUN /opt/venv/bin/pip install -e . \
    && rm -rf /app/*.egg-info /app/build
COPY alembic.ini ./
COPY alembic ./alembic
COPY email_templates ./email_templates
COPY content ./content

FROM python:3.12-slim AS runtime
RUN groupadd --system --gid 10001 regimen \
    && useradd --system --uid 10001 --gid regimen --home-dir /app --shell /usr/sbin/nologin regimen
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REGIMEN_ENV=production
USER regimen
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["regimen", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker", "--workers", "4"]
