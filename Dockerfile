# syntax=docker/dockerfile:1
# Multi-stage build: compile with the committed .sqlx offline data (no database
# needed at build time), run on a small Debian image as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
# Dependencies first, for layer caching.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin robeing

FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Slack and Google. postgresql: only for the embedded
# default (DATABASE_URL unset); drop it when you always set DATABASE_URL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/robeing robeing
COPY --from=build /src/target/release/robeing /usr/local/bin/robeing
USER robeing
WORKDIR /var/lib/robeing
ENV ROBEING_LISTEN=0.0.0.0:3000 \
    ROBEING_DATA_DIR=/var/lib/robeing \
    LOG_FORMAT=json
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
ENTRYPOINT ["/usr/local/bin/robeing"]
CMD ["serve"]
