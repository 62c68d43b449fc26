# syntax=docker/dockerfile:1.12
#
# warren's two images from one file:
#
#   docker build --target api    -t warren-api .
#   docker build --target worker -t warren-worker .
#   docker buildx build --platform linux/amd64,linux/arm64 --target worker -t warren-worker .
#
# The worker image carries the repository's model repository (models/: seed and
# digits) at /models, MODEL_REPOSITORY=/models; MODELS picks the models a container
# serves (empty: all of them). Mount your own repository over /models, or build
# FROM the worker image and COPY more model directories into /models/
# (docs/running.md).
#
# The build stages run on the builder's own platform and cross-compile (pure Go, no
# cgo), so multi-platform images need no emulation. The runtime images are distroless
# static: no shell, no package manager, numeric non-root user 65532. Each binary
# carries its own probe (`/api healthcheck`, `/worker healthcheck [/health]`), so
# HEALTHCHECK needs no curl. internal/deploycheck/dockerfile_test.go checks this file
# against the Makefile's build line, go.mod, pkg/config and the model repository.

# ---- build ------------------------------------------------------------------------
# The tag follows go.mod's go line (the default Debian variant of that release).
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
# Use the image's toolchain, never download another one.
ENV GOTOOLCHAIN=local
# Modules first: a source change does not download them again.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.mod,target=go.mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    go mod download
# The API's job store directory (DATA_DIR), created here because the runtime image
# has no shell; the api stage copies it owned by the runtime user.
RUN mkdir -p /out/data

# One stage per binary: `--target api` builds only the API. The command is the
# Makefile's GOBUILD line, for the target platform.
FROM build AS build-api
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,target=. \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/api ./cmd/api

FROM build AS build-worker
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,target=. \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/worker ./cmd/worker

# ---- api ----------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS api
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="warren-api" \
      org.opencontainers.image.description="warren HTTP API: turns /process calls and /jobs into RabbitMQ messages" \
      org.opencontainers.image.source="https://github.com/warren-farm/warren" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build-api /out/api /api
COPY --from=build --chown=65532:65532 /out/data /data
# DATA_DIR is the embedded job store (bbolt), used when REDIS_URL is empty; one API
# replica only.
ENV LOG_FORMAT=json \
    DATA_DIR=/data
VOLUME /data
USER 65532:65532
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/api", "healthcheck"]
ENTRYPOINT ["/api"]

# ---- worker -------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS worker
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="warren-worker" \
      org.opencontainers.image.description="warren predictor worker: serves the models of a model repository (built in: models/ at /models), consuming each model version's request and job queues" \
      org.opencontainers.image.source="https://github.com/warren-farm/warren" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build-worker /out/worker /worker
# The model repository (docs/model-repository.md), owned by root: the worker only
# reads it. .dockerignore leaves the models' testdata/ out.
COPY models/ /models/
ENV LOG_FORMAT=json \
    MODEL_REPOSITORY=/models
USER 65532:65532
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/worker", "healthcheck"]
ENTRYPOINT ["/worker"]
