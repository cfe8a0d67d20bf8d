# kube-nftpolicy: multi-stage build. Not built on the development machine
# (no Docker engine there); kept small and conventional.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnftnl-dev libmnl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked -p kube-nftpolicy --bin kube-nftpolicy

FROM debian:bookworm-slim
# libnftnl11 and libmnl0 are the only runtime libraries; nftables gives
# operators `nft list table inet kube-nftpolicy` inside the pod.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnftnl11 libmnl0 nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kube-nftpolicy /usr/local/bin/kube-nftpolicy
ENTRYPOINT ["/usr/local/bin/kube-nftpolicy"]
CMD ["controller"]
