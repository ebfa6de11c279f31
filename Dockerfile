# One image with all three binaries; docker-compose picks the command per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/followup-producer target/release/followup-projector target/release/followup-gateway /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 followup
COPY --from=build /out/ /usr/local/bin/
USER followup
ENV RUST_LOG=info LOG_FORMAT=json
CMD ["followup-producer", "serve"]
