# One image for every adamtune process: the API, the workers and `adamtune db upgrade`.
# docker-compose.yml runs it; `docker build -t adamtune .` builds it alone.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and pinned: it is the largest layer and changes least. The default wheel
# from PyPI carries CUDA, which GPU workers need; for a CPU-only image build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_URL=
RUN pip install torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

WORKDIR /app
COPY pyproject.toml README.md ./
COPY adamtune ./adamtune
COPY tuner ./tuner
COPY api ./api
COPY workers ./workers
COPY migrations ./migrations
COPY examples ./examples
RUN pip install . && useradd --create-home --uid 10001 adamtune

USER adamtune
EXPOSE 8000
ENTRYPOINT ["adamtune"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
