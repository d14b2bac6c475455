# One image for every Stanch part: `stanch api`, `stanch worker`, `stanch mock-idp`.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stanch ./stanch
COPY workflows ./workflows
COPY activities ./activities
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home /app stanch
COPY playbooks ./playbooks
COPY inventory ./inventory
USER stanch
ENV STANCH_STATE_DIR=/var/lib/stanch \
    STANCH_PLAYBOOKS_DIR=/app/playbooks \
    STANCH_LOG_FORMAT=json
ENTRYPOINT ["stanch"]
CMD ["--help"]
