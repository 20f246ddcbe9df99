# switchboard images, multi-stage on Debian 12.
#   build    compiles everything (and the tests) with -Werror
#   test     build + the tools the test suites drive (the compose `tests` service)
#   runtime  (default) the binaries, the schema and runtime libraries only,
#            as the unprivileged user "switchboard"
FROM debian:12 AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential cmake pkg-config ca-certificates python3 \
      libevent-dev libhiredis-dev librdkafka-dev libmariadb-dev libmariadb-dev-compat \
      libmongoc-dev libbson-dev libcjson-dev libcurl4-openssl-dev libssl-dev libcmocka-dev libwslay-dev libjemalloc-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY lib lib
COPY clients clients
COPY jobs jobs
COPY store store
COPY dispatcher dispatcher
COPY workers workers
COPY migrate migrate
COPY counts counts
COPY bench bench
COPY tests tests
COPY schema schema
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON \
      -DSB_SCHEMA_DIR_DEFAULT=/usr/share/switchboard/schema >/dev/null \
    && cmake --build build -j "$(nproc)"

FROM build AS test
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      kcat curl jq \
    && rm -rf /var/lib/apt/lists/*
ENV SB_BIN_DIR=/src/build/bin SB_SCHEMA_DIR=/src/schema
CMD ["/src/tests/compose/run"]

FROM debian:12-slim AS runtime
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libevent-2.1-7 libevent-pthreads-2.1-7 libhiredis0.14 librdkafka1 libmariadb3 \
      libmongoc-1.0-0 libbson-1.0-0 libcjson1 libcurl4 libssl3 libwslay1 libjemalloc2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin switchboard
COPY --from=build /src/build/bin/switchboard-dispatcher /src/build/bin/switchboard-worker \
     /src/build/bin/switchboard-migrate /src/build/bin/switchboard-counts /usr/local/bin/
COPY schema /usr/share/switchboard/schema
USER switchboard
ENV SB_SCHEMA_DIR=/usr/share/switchboard/schema SB_LOG_FORMAT=json
EXPOSE 8080
CMD ["switchboard-dispatcher", "--listen", "0.0.0.0:8080"]
