# Build: docker build --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t oss-encryption-operator .
# The image carries two binaries: /oss-encryption-operator (the entrypoint) and /oss-emulator
# (the OSS/KMS stand-in that deploy/demo runs in a cluster).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, against stub sources: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src/bin benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/oss-emulator.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/fleet.rs \
 && echo 'fn main() {}' > benches/cli.rs \
 && echo 'fn main() {}' > benches/audit.rs \
 && echo 'fn main() {}' > benches/slow_clients.rs \
 && echo 'fn main() {}' > benches/state_file.rs \
 && cargo build --release --locked --bins \
 && rm -rf src benches
COPY . .
# .git is not copied in: the commit for oss_encryption_operator_build_info comes in as an argument.
ARG COMMIT=unknown
ENV OSS_ENCRYPTION_OPERATOR_COMMIT=${COMMIT}
# Touch the real sources so that cargo rebuilds the crate over the stubs' artefacts.
RUN touch src/main.rs src/lib.rs src/bin/oss-emulator.rs build.rs \
 && cargo build --release --locked --bins \
 && cp target/release/oss-encryption-operator target/release/oss-emulator /

# Runtime: distroless (CA certificates and libc, no shell), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /oss-encryption-operator /oss-emulator /
USER 65532:65532
EXPOSE 8080
HEALTHCHECK NONE
ENTRYPOINT ["/oss-encryption-operator"]
CMD ["run"]
