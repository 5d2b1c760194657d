# One image with both binaries, built from this repository:
#   docker build -t pgkafka:dev .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target directory (gigabytes) is dropped in the same step: only the two
# binaries leave this stage, and a layer holding it would only fill the disk.
RUN cargo build --release --locked -p pgkafka-connector -p pgkafka-operator \
    && cp target/release/pgkafka-connector target/release/pgkafka-operator /usr/local/bin/ \
    && rm -rf target

# distroless/cc has glibc, libgcc and OpenSSL but no zlib, which the engine
# links (libz-sys takes the build stage's zlib1g-dev); OpenSSL is copied too,
# so the runtime holds the very libraries the binaries were linked against.
# tests/node/image.sh checks each binary's libraries inside this stage.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 \
     /usr/lib/x86_64-linux-gnu/libz.so.1 /usr/lib/x86_64-linux-gnu/
COPY --from=build /usr/local/bin/pgkafka-connector /usr/local/bin/pgkafka-operator /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pgkafka-connector"]
CMD ["--help"]
