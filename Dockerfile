# syntax=docker/dockerfile:1
# tokenwarden image: a Rust build stage, then Debian slim with only the binary
# and the default configuration, run as a non-root user.
#
#   docker build -t tokenwarden:0.1.0 .
#   docker run --rm tokenwarden:0.1.0 check-config
#
# No CA bundle is needed: the HTTP client uses rustls with built-in
# webpki roots. The image writes nothing to disk, so it runs with a read-only
# root file system.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Everything the build reads: the manifest and lock file, the sources, the
# migrations and default configuration embedded at compile time, the benches
# the manifest declares and the fakes crate of the workspace (cargo refuses a
# manifest whose targets or members are missing). .dockerignore keeps
# everything else out of the context. The image is built without the `demo`
# feature: no fake platform ships in it.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY migrations ./migrations
COPY config ./config
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin tokenwarden \
 && install -D -m 0755 target/release/tokenwarden /out/tokenwarden

FROM debian:${DEBIAN_RELEASE}-slim
RUN groupadd --system --gid 65532 tokenwarden \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin tokenwarden
COPY --from=build /out/tokenwarden /usr/local/bin/tokenwarden
# The built-in defaults, as the config file the command line below names.
# Kubernetes mounts its ConfigMap over /etc/tokenwarden.
COPY config/default.toml /etc/tokenwarden/tokenwarden.toml
USER 65532:65532
# API, /healthz and /readyz; /metrics when api.metrics_listen is set.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tokenwarden"]
CMD ["--config", "/etc/tokenwarden/tokenwarden.toml", "run", "--role", "scheduler,worker,api"]
