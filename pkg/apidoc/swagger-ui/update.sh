#!/usr/bin/env bash
# Replace the embedded Swagger UI files with those of swagger-ui-dist VERSION from npm.
# Usage: ./update.sh VERSION   (run from pkg/apidoc/swagger-ui)
set -euo pipefail
version=${1:?usage: $0 VERSION}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png favicon-16x16.png \
	LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
	cp "$tmp/package/$f" "$here/$f"
done
cd "$here"
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png favicon-16x16.png; do
	printf '%s\t%s\t%s\n' "$f" "$(wc -c <"$f" | tr -d ' ')" "$(sha256sum "$f" | cut -d' ' -f1)"
done
echo "now set SwaggerUIVersion = \"$version\" in ../apidoc.go and update README.md"
