# syntax=docker/dockerfile:1
# The same image layout as `make images` (scripts/oci-image.py), for people
# who build with Docker or BuildKit. Not exercised on the development machine
# (it has no container engine): `make images` is the tested path.
#
#   docker build --target authserver -t ghcr.io/authplane/authserver:0.1.0 .
#   docker build --target authplane-operator -t ghcr.io/authplane/authplane-operator:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --release --workspace --bins \
 && mkdir -p /out/etc /out/tmp /out/home/nonroot \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group \
 && printf 'hosts: files dns\n' >/out/etc/nsswitch.conf \
 && chmod 1777 /out/tmp && chown 65532:65532 /out/home/nonroot \
 && for lib in $(ldd target/release/authserver target/release/authplane-operator | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do \
      mkdir -p "/out$(dirname "$lib")" && cp -L "$lib" "/out$lib"; done \
 && mkdir -p /out/etc/ssl/certs && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/

FROM scratch AS base
COPY --from=build /out/ /
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532

FROM base AS authplane-operator
COPY --from=build /src/target/release/authplane-operator /usr/local/bin/authplane-operator
ENTRYPOINT ["/usr/local/bin/authplane-operator"]

FROM base AS authserver
COPY --from=build /src/target/release/authserver /usr/local/bin/authserver
ENTRYPOINT ["/usr/local/bin/authserver"]
