# syntax=docker/dockerfile:1
#
# The image of cofrap-admin, the operators' tool, built like the functions'
# (dockerfiles/Dockerfile) but without a watchdog: it runs one command and
# exits, as a Kubernetes Job (the schema Job's `rekey`, the events' pruning
# CronJob, `make admin-job`):
#
#   docker build -f dockerfiles/admin.Dockerfile .
#
# The result holds one static binary and nothing else: no shell, no libc, no
# CA bundle, no passwd file. The tool reads the administrator's secret files
# (db-admin-username, db-admin-password, db-ca-certificate) from SECRETS_DIR.
#
# Offline (make images WATCHDOG=<file>, and the image test), the build stage
# is replaced by a folder: --build-context build=<folder holding
# out/usr/bin/cofrap-admin>, with --pull=never.
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-alpine

# As in dockerfiles/Dockerfile: Alpine's Rust targets musl, +crt-static
# links the C runtime in, and the image's own target is named so that the
# flag spares the proc-macros; gcc and musl-dev compile ring.
FROM ${RUST_IMAGE} AS build
RUN apk add --no-cache gcc musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY common common
COPY bins bins
COPY tests tests
COPY bench bench
COPY dev dev
COPY admin admin
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && cargo build --release --locked --target "${target}" --package cofrap-admin \
 && install -D -m 0555 "target/${target}/release/cofrap-admin" /out/usr/bin/cofrap-admin

FROM scratch
COPY --from=build /out/ /
# A numeric user: scratch has no /etc/passwd to look a name up in.
USER 10001:10001
ENTRYPOINT ["/usr/bin/cofrap-admin"]
CMD ["--help"]
