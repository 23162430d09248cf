# carabm on a CUDA 12 runtime: CuPy for the GPU backend, NumPy/numba fallback on CPU.
# Build: docker build -t carabm .   Run: docker run --gpus all -v "$PWD":/work carabm run configs/quickstart.yaml --out /work/q.h5
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-dev build-essential libhdf5-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/carabm
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY carabm ./carabm
COPY kernels ./kernels
COPY configs ./configs
COPY scripts ./scripts
RUN python3 -m pip install ".[gpu]"

WORKDIR /work
ENTRYPOINT ["carabm"]
CMD ["info"]
