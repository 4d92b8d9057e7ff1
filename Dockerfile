# portcullis in a small, non-root runtime image.
#   docker build -t portcullis .
#   docker run --rm -p 443:8443 -p 80:8080 -v "$PWD/portcullis.toml:/etc/portcullis/portcullis.toml:ro" \
#     -v portcullis-state:/var/lib/portcullis -e PORTCULLIS_SESSION_KEYS portcullis
# Inside, listen on unprivileged ports (8443/8080) and publish them as 443/80.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake=3.25.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p portcullis \
 && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/portcullis --create-home --shell /usr/sbin/nologin portcullis \
 && mkdir -p /etc/portcullis \
 && chmod 0700 /var/lib/portcullis
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
USER 10001:10001
WORKDIR /var/lib/portcullis
ENV PORTCULLIS_CONFIG=/etc/portcullis/portcullis.toml
EXPOSE 8443 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run"]
