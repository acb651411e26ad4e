#!/usr/bin/env bash
# `make package`: the deployable SAM template build/sam.json and its code build/deployment.zip.
#
#   1. write chalicelib/build_info.json (version, git hash, build time) so that /version
#      reports what was packaged; it goes into the zip and is removed from the tree after;
#   2. chalice package, merging infra/minion.yaml into Chalice's template;
#   3. convert Chalice's YAML output to build/sam.json;
#   4. cfn-lint build/sam.json and infra/runner-role.yaml.
#
# Environment: MINION_VERSION overrides the version (default: `git describe` of a v* tag,
# else 0.0.0-dev); CHALICE_STAGE the Chalice stage of .chalice/config.json (default dev).
# Needs PyPI the first time (Chalice downloads Linux wheels of requirements.txt; cached in
# .chalice/deployments afterwards). Never needs AWS credentials.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"
stage="${CHALICE_STAGE:-dev}"
out="$root/build"
build_info="$root/chalicelib/build_info.json"

githash="$(git rev-parse HEAD)"
if [[ -n "${MINION_VERSION:-}" ]]; then
  version="$MINION_VERSION"
elif described="$(git describe --tags --match 'v[0-9]*' --dirty=+dirty 2>/dev/null)"; then
  version="${described#v}"
else
  version="0.0.0-dev"
  git diff --quiet HEAD -- 2>/dev/null || version="$version+dirty"
fi
buildstamp="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

trap 'rm -f "$build_info"' EXIT
VERSION="$version" GITHASH="$githash" BUILDSTAMP="$buildstamp" "$venv/bin/python" - "$build_info" <<'EOF'
import json, os, sys
info = {"version": os.environ["VERSION"], "githash": os.environ["GITHASH"],
        "buildstamp": os.environ["BUILDSTAMP"]}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(info, handle)
    handle.write("\n")
EOF

rm -rf "$out"
# Chalice needs a region to build its model; nothing regional is baked into the template.
AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  "$venv/bin/chalice" package --stage "$stage" --merge-template infra/minion.yaml "$out"

# A YAML merge template makes Chalice write build/sam.yaml; CI and tests read build/sam.json.
"$venv/bin/python" - "$out/sam.yaml" "$out/sam.json" <<'EOF'
import json, sys
import yaml
with open(sys.argv[1], encoding="utf-8") as handle:
    template = yaml.safe_load(handle)
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(template, handle, indent=2, sort_keys=False)
    handle.write("\n")
EOF
rm -f "$out/sam.yaml"

"$venv/bin/cfn-lint" "$out/sam.json" infra/runner-role.yaml
echo "packaged $version ($githash, $buildstamp): $out/sam.json, $out/deployment.zip"
