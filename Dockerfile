# The refinery image: loaders + dbt project. Used by docker-compose.yml's `refinery` service.
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

WORKDIR /app
COPY pyproject.toml README.md ./
COPY loaders ./loaders
COPY refinery ./refinery
COPY models ./models
COPY macros ./macros
COPY seeds ./seeds
COPY snapshots ./snapshots
COPY tests/dbt ./tests/dbt
COPY dbt_project.yml profiles.yml.example ./
RUN pip install --no-cache-dir . \
    && useradd --create-home refinery \
    && mkdir -p /app/target /app/logs /app/.refinery \
    && chown -R refinery /app
ENV REFINERY_PROJECT_DIR=/app
USER refinery

ENTRYPOINT ["refinery"]
CMD ["sync", "--tes-dir", "/data/tes"]
