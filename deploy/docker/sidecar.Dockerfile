# tollgate-sidecar, built from the repository root:
#
#   docker build -f deploy/docker/sidecar.Dockerfile -t REGISTRY/tollgate-sidecar:TAG .

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --release -p tollgate-sidecar

FROM debian:trixie-slim
COPY --from=build /src/target/release/tollgate-sidecar /usr/local/bin/tollgate-sidecar
# A container is reached on its pod address, not on loopback (the default).
ENV TOLLGATE_LISTEN=0.0.0.0:8790
EXPOSE 8790
USER 65532:65532
ENTRYPOINT ["tollgate-sidecar"]
CMD ["serve"]
