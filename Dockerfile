# carabm on a CUDA 12 runtime: CuPy for the GPU backend, NumPy/numba on the CPU, and headless
# rendering (carabm render) on the GPU through EGL.
#   docker build -t carabm .
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD":/work carabm run quickstart --out q.h5
# --user makes the files written in the bind mount yours; any uid works (HOME and the caches
# are writable by everyone). Without --gpus all the image runs on the CPU.
# Build argument MESA=1 adds Mesa's software EGL, so `carabm render` draws in 3D without a GPU too
# (a larger image: Mesa and LLVM); without it, CPU-only rendering falls back to matplotlib 2D frames.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

# --- stage 1: a virtual environment with carabm and its dependencies -----------------------
# Every dependency installs from a binary wheel (h5py bundles HDF5), so no compiler and no
# HDF5 headers are needed; pip and the build front end stay in this stage.
FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /opt/carabm
COPY pyproject.toml setup.cfg README.md LICENSE ./
# carabm/kernels (and carabm/configs where present) are symlinks to these folders: package data.
COPY kernels ./kernels
COPY configs ./configs
COPY carabm ./carabm
# gpu: CuPy for CUDA 12; render: vispy, PyOpenGL, imageio-ffmpeg (headless, no Qt).
RUN /opt/venv/bin/pip install ".[gpu,render]"

# --- stage 2: the runtime image ----------------------------------------------------------------
FROM ${CUDA_IMAGE}
ARG MESA=0
ENV DEBIAN_FRONTEND=noninteractive
# libegl1 + libgl1 + libopengl0: the glvnd dispatch libraries. With --gpus all the NVIDIA
# container toolkit mounts the driver's EGL/GL libraries (the "graphics" capability below) and
# glvnd finds them through the vendor file written next.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libegl1 libgl1 libopengl0 libgomp1 \
    && if [ "$MESA" = 1 ]; then apt-get install -y --no-install-recommends libegl-mesa0 libgl1-mesa-dri; fi \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/share/glvnd/egl_vendor.d \
    && printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}}\n' \
       > /usr/share/glvnd/egl_vendor.d/10_nvidia.json

COPY --from=build /opt/venv /opt/venv
COPY configs /opt/carabm/configs
COPY scripts /opt/carabm/scripts

# A non-root default user; `docker run --user UID:GID` works as well: HOME, the working
# directory and every cache are writable by any uid, and nothing is written next to the code.
RUN groupadd --gid 10001 carabm \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/carabm --shell /usr/sbin/nologin carabm \
    && chmod 1777 /home/carabm \
    && mkdir -p /work && chmod 1777 /work
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/home/carabm \
    XDG_CACHE_HOME=/tmp/carabm-cache \
    NUMBA_CACHE_DIR=/tmp/carabm-cache/numba \
    MPLCONFIGDIR=/tmp/carabm-cache/matplotlib \
    CUPY_CACHE_DIR=/tmp/carabm-cache/cupy \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["carabm"]
CMD ["info"]
