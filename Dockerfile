# One image for every urbanbrain process: compose.yaml runs it as `urbanbrain ingest`,
# `urbanbrain streams worker`, `urbanbrain kafka init` and `urbanbrain simulate run`.
#
#   docker compose build            (or: docker build -t urbanbrain:0.1.0 .)
#
# Base pinned by minor version and Debian release: patch releases of Python 3.11 (security
# fixes) come in on rebuild, a new Debian or Python minor does not.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- stage 1: the urbanbrain wheel ---------------------------------------------------------
# Built in its own stage so the source tree, build/ and *.egg-info never reach the image.
# The build backend is pinned like the runtime (pip's build isolation would otherwise take the
# newest setuptools of the day): installed first, then used without isolation.
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN pip install setuptools==84.2.1 wheel==0.48.0
COPY . .
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# --- stage 2: runtime ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# Comma-separated extras of pyproject.toml to install as well, e.g. URBANBRAIN_EXTRAS=sim
# for Parquet replay (pyarrow).
ARG URBANBRAIN_EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed uid/gid (10001) that owns only its state directories.
# registry/ is where compose mounts the device-registry volume: a new named volume takes
# this directory's owner, so the simulator (same uid) can write the registry there; the same
# for console/ (the console's users file).
RUN groupadd --system --gid 10001 urbanbrain \
    && useradd --system --uid 10001 --gid urbanbrain --no-create-home \
        --home-dir /var/lib/urbanbrain --shell /usr/sbin/nologin urbanbrain \
    && install -d -o urbanbrain -g urbanbrain -m 0750 \
        /var/lib/urbanbrain /var/lib/urbanbrain/data /var/lib/urbanbrain/registry \
        /var/lib/urbanbrain/console

# Dependencies first, in their own layer, pinned by deploy/constraints.txt: editing code
# does not reinstall numpy and pandas, and a rebuild gets the versions the tests ran with.
COPY pyproject.toml deploy/constraints.txt /tmp/build/
RUN python -c "import os, tomllib; p = tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']; extras = [e.strip() for e in os.environ.get('URBANBRAIN_EXTRAS', '').split(',') if e.strip()]; print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
        > /tmp/build/requirements.txt \
    && pip install --requirement /tmp/build/requirements.txt --constraint /tmp/build/constraints.txt

# The project itself (no dependency resolution left to do; pip check proves it).
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/urbanbrain-*.whl \
    && pip check \
    && rm -rf /tmp/wheels /tmp/build

USER urbanbrain:urbanbrain
WORKDIR /var/lib/urbanbrain
ENV URBANBRAIN_DATA_DIR=/var/lib/urbanbrain/data

ENTRYPOINT ["urbanbrain"]
CMD ["--help"]
