#!/usr/bin/env bash
# Rebuilds integrations/static/integrations/editor/editor.js (and LICENSE.txt beside it) from package-lock.json.
# Needs node >= 18 and the npm registry; nothing is fetched at runtime. Commit the result.
set -euo pipefail
cd "$(dirname "$0")"
# --ignore-scripts: esbuild's postinstall only checks its binary, which npm already installed as @esbuild/<platform>.
npm ci --ignore-scripts --no-audit --no-fund
node build.mjs
