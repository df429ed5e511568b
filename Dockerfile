# syntax=docker/dockerfile:1
# One image holds every Agent Monitor binary; compose.yaml's `command` picks the one to run.

# Build: the Go release go.mod asks for, so no toolchain download happens inside the build.
FROM golang:1.26.8 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY . .
# Only the packages the four services need are downloaded (not the module's tool dependencies); the
# cache mounts keep modules and build results between builds. The development tools (cmd/loadgen,
# cmd/devstack) stay out of the production image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && go build -trimpath -ldflags='-s -w' -o /out/ \
      ./cmd/gateway ./cmd/influx-writer ./cmd/pg-sync ./cmd/alerter ./cmd/rollup

# Run: Alpine rather than distroless because the compose health checks need an HTTP client in the
# image: busybox's wget is already there (a few MB in all), whereas distroless has no shell or
# client and debian-slim would need curl installed on top. The binaries are static (CGO_ENABLED=0).
FROM alpine:3.21
RUN apk add --no-cache ca-certificates tzdata \
 && adduser -D -H -u 10001 agentmonitor
COPY --from=build /out/ /usr/local/bin/
USER 10001
EXPOSE 8080 9101 9102 9103 9104
CMD ["gateway"]
