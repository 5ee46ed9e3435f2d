# One image for every process; docker-compose.yml picks the command per service.
FROM python:3.11-slim
WORKDIR /app
COPY . .
# Editable install, so the code, migrations/ and the generated protos all resolve from /app.
RUN pip install --no-cache-dir -e . \
 && python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. protos/*.proto
ENV MIGRATIONS_DIR=/app/migrations PYTHONUNBUFFERED=1 LOG_FORMAT=json
# The backup service's volume mounts here; a new named volume takes this directory's owner.
RUN mkdir -m 0700 /backups && chown nobody:nogroup /backups
USER nobody
EXPOSE 3000 50061 50062 50063
