#!/usr/bin/env bash
# Re-creates server/static/vendor/ from package-lock.json (needs Node.js/npm; running the platform doesn't).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
out=../server/static/vendor/chart.js
mkdir -p "$out"
cp node_modules/chart.js/dist/chart.umd.min.js "$out/"
cp node_modules/chart.js/LICENSE.md "$out/LICENSE.md"
# The UMD build bundles @kurkle/color: ship its license too.
cp node_modules/@kurkle/color/LICENSE.md "$out/LICENSE-kurkle-color.md"
version=$(node -p 'require("./node_modules/chart.js/package.json").version')
(cd "$out" && sha256sum chart.umd.min.js > SHA256SUMS && echo "chart.js $version" > VERSION)
echo "vendored chart.js $version into $out"
