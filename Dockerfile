# Build: docker build -t oss-encryption-operator .
FROM rust:1.95-bookworm AS build
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
