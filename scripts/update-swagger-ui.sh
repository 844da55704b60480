#!/usr/bin/env bash
# Refreshes the Swagger UI files in swagger-ui/ from the swagger-ui-dist
# package on the npm registry. The service embeds that folder; index.html
# and swagger-initializer.js there are the project's own and are kept.
#
#   scripts/update-swagger-ui.sh [version]
set -euo pipefail

version=${1:-5.32.0}
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/swagger-ui
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "swagger-ui-dist@$version" >/dev/null)
tar -xzf "$tmp"/swagger-ui-dist-"$version".tgz -C "$tmp"

files=(
	LICENSE NOTICE
	swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt
	swagger-ui-standalone-preset.js swagger-ui-standalone-preset.js.LICENSE.txt
	swagger-ui.css index.css favicon-16x16.png favicon-32x32.png
)
for f in "${files[@]}"; do
	cp "$tmp/package/$f" "$dest/$f"
done
echo "$version" >"$dest/VERSION"
echo "swagger-ui-dist $version copied to $dest"
