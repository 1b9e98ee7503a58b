# Build: docker build --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t oss-encryption-operator .
FROM rust:1.95-bookworm AS build
# .git is not copied in: the commit for oss_encryption_operator_build_info comes in as an argument.
ARG COMMIT=unknown
ENV OSS_ENCRYPTION_OPERATOR_COMMIT=${COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin oss-encryption-operator \
 && cp target/release/oss-encryption-operator /oss-encryption-operator

# Runtime: distroless (CA certificates and libc, no shell), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /oss-encryption-operator /oss-encryption-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/oss-encryption-operator"]
CMD ["run"]
