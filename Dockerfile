# syntax=docker/dockerfile:1
# streamgate: build the WASM engine and type-check, then a slim runtime on Node 24 LTS.
# Node 24 runs the TypeScript sources directly (type stripping), so the runtime image
# carries src/ as is plus the compiled wasm/build/engine.wasm.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm install rather than npm ci: see .ci/run (chdb's optional packages for other platforms)
RUN npm install --no-audit --no-fund
COPY tsconfig.json asconfig.json ./
COPY wasm ./wasm
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npm run build

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# production dependencies only; the image's own Node 24 runs them
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/wasm/build/engine.wasm ./wasm/build/engine.wasm
COPY src ./src
COPY streamgate.example.yaml ./streamgate.example.yaml
# .cache: the Kafka listener extracts the protocol's message definitions there on first start
RUN mkdir -p /var/lib/streamgate/audit /app/.cache && chown -R node:node /var/lib/streamgate /app/.cache
USER node
ENV AUDIT_DIR=/var/lib/streamgate/audit \
    HTTP_HOST=0.0.0.0 \
    ADMIN_HOST=0.0.0.0
# HTTP produce API, Kafka bootstrap, admin (/metrics, /livez, /readyz)
EXPOSE 8080 9192 9644
# readiness: upstream reachable, engine loaded, audit spool writable, identity keys fetched
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.ADMIN_PORT || 9644) + '/readyz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "src/cli/main.ts"]
CMD ["serve", "--config", "/app/streamgate.example.yaml"]
