# pbx-router daemon image.
#
#   docker build -t pbx-router .
#   docker run -d --name pbx-router --network host --restart unless-stopped \
#     -v /etc/pbx-router:/etc/pbx-router:ro -v pbx-router-data:/var/lib/pbx-router \
#     -e PBX_ROUTER_ARI_PASSWORD=... pbx-router
#
# --network host: Asterisk serves ARI on 127.0.0.1:8088 only (asterisk_conf/http.conf) and
# sends call audio (RTP) to pbx-router's media ports on 127.0.0.1, so the daemon must share
# the host's loopback. In pbx-router.yaml set data_dir: /var/lib/pbx-router (the volume).

# --- build: turn the project and its dependencies into wheels, with pip's cache and any
#     build tools left behind in this stage.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels .

# --- runtime
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed uid/gid, so files on the data volume keep their owner across rebuilds.
RUN groupadd --system --gid 10001 pbx-router \
 && useradd --system --uid 10001 --gid pbx-router --home-dir /var/lib/pbx-router \
      --no-create-home --shell /usr/sbin/nologin pbx-router \
 && install -d -o pbx-router -g pbx-router -m 0750 /var/lib/pbx-router \
 && install -d -m 0755 /etc/pbx-router

COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels pbx-router && rm -rf /wheels

# Recordings, the embedded PostgreSQL (when database.url is empty) and other state.
VOLUME ["/var/lib/pbx-router"]
WORKDIR /var/lib/pbx-router
# Non-root: also required by the embedded PostgreSQL, which refuses to run as root.
USER pbx-router

# The admin API listens on 127.0.0.1:8089 (admin.host/admin.port); with host networking
# that is the container's loopback too. /readyz answers 503 (an HTTPError here, so the check
# fails) while the Asterisk link or the database is down; a refused connection fails it too.
# (/healthz only says the process answers; /health is kept for older checks and is always 200.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8089/readyz', timeout=4)"]

ENTRYPOINT ["pbx-router"]
CMD ["run", "-c", "/etc/pbx-router/pbx-router.yaml"]
