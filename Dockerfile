# QwenRL Studio in a container: arena, leaderboard, reward inspector, training, REST API.
#
#   docker build -t qwenrl-studio .                                  # CPU torch (the default)
#   docker build -t qwenrl-studio:cuda --build-arg TORCH_VARIANT=cu128 .   # a CUDA build of torch
#   docker run -p 7860:7860 -e QWENRL_ADMIN_PASSWORD=change-me -v qwenrl-workspace:/workspace qwenrl-studio
#
# The workspace (vote store, gallery, training runs) lives on the /workspace volume, so votes
# and checkpoints survive a new container. See docs/studio.md.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# cpu, or the CUDA tag of a PyTorch wheel index (cu126, cu128, ...) for a GPU image
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_OFFLINE=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin studio

WORKDIR /opt/qwenrl
# torch first, from the chosen wheel index: the layer is reused while the code changes
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml setup.py README.md ./
COPY qwenrl ./qwenrl
COPY arena ./arena
COPY training ./training
COPY app ./app
COPY data ./data
# the bundled automatic-arena votes a new workspace's leaderboard starts with
COPY benchmarks/results/seed_recipe_votes.jsonl ./benchmarks/results/
# Editable, as `make install` does: the code finds data/ (prompt sets, bundled models) and
# training/configs/ beside itself. The constraint keeps the torch installed above (a local
# version such as 2.13.0+cpu matches it). A C compiler is there only while the arena's optional
# extensions (arena/_loops.c, arena/_scan.c: faster ratings and vote reading) are built.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && echo "torch==${TORCH_VERSION}" > /tmp/torch-constraint.txt \
 && pip install -c /tmp/torch-constraint.txt -e . \
 && rm /tmp/torch-constraint.txt \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
 && python -m compileall -q qwenrl arena training app

RUN mkdir -p /workspace && chown studio:studio /workspace
VOLUME ["/workspace"]
USER studio
ENV OMP_NUM_THREADS=2
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/api/v1/health', timeout=4)" || exit 1

# The admin password comes from QWENRL_ADMIN_PASSWORD (without it, nobody can launch jobs).
CMD ["qwenrl", "studio", "--workspace", "/workspace", "--host", "0.0.0.0", "--port", "7860"]
