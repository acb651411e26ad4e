#!/usr/bin/env bash
# `make package`: the deployable SAM template build/sam.json and its code build/deployment.zip.
#
#   1. copy the app (app.py, chalicelib/, requirements.txt, .chalice/config.json) to a
#      staging directory and write its chalicelib/build_info.json (version, git hash, build
#      time), so that /version reports what was packaged; the work tree is left untouched;
#   2. chalice package there, merging infra/minion.yaml into Chalice's template, into build/,
#      for the runtime and architecture .chalice/config.json names (infra/runtime.py: not the
#      runtime of the Python running the build), with the wheels of that runtime;
#   3. add the runtime's .pyc files to build/deployment.zip (compiled by a Python of the
#      runtime's version: `pyenv install 3.13` or MINION_RUNTIME_PYTHON);
#   4. convert Chalice's YAML output to build/sam.json;
#   5. cfn-lint build/sam.json and infra/runner-role.yaml.
#
# Environment: MINION_VERSION overrides the version (default: `git describe` of a v* tag,
# else pyproject.toml's version; +dirty for uncommitted changes); CHALICE_STAGE the Chalice
# stage of .chalice/config.json (default dev). Needs the package index (PyPI): Chalice
# downloads the Linux wheels of requirements.txt (kept in .chalice/deployments/ for the next
# build). Never needs AWS credentials.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"
stage="${CHALICE_STAGE:-dev}"
out="$root/build"

# Fails before building when the runtime's Python (for the bytecode) is missing.
runtime_info="$("$venv/bin/python" infra/runtime.py describe)"

githash="$(git rev-parse HEAD)"
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty="+dirty"
if [[ -n "${MINION_VERSION:-}" ]]; then
  version="$MINION_VERSION"
elif described="$(git describe --tags --match 'v[0-9]*' --dirty=+dirty 2>/dev/null)"; then
  version="${described#v}"
else
  version="$("$venv/bin/python" -c 'import tomllib
print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])' 2>/dev/null \
    || echo 0.0.0)$dirty"
fi
buildstamp="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# Stage a copy: the build info never lands in the work tree (where `make run` and the tests
# would report it), and Chalice's per-build cache goes away with the copy.
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/.chalice"
cp app.py requirements.txt "$staging/"
cp .chalice/config.json "$staging/.chalice/"
cp -r chalicelib "$staging/"
if [[ -d vendor ]]; then cp -r vendor "$staging/"; fi
# Chalice's cache of the downloaded wheels (keyed by requirements, runtime and architecture)
# outlives the staging copy.
mkdir -p .chalice/deployments
ln -s "$root/.chalice/deployments" "$staging/.chalice/deployments"
find "$staging" -name __pycache__ -type d -prune -exec rm -rf {} +
VERSION="$version" GITHASH="$githash" BUILDSTAMP="$buildstamp" \
  "$venv/bin/python" - "$staging/chalicelib/build_info.json" <<'PY'
import json, os, sys
info = {"version": os.environ["VERSION"], "githash": os.environ["GITHASH"],
        "buildstamp": os.environ["BUILDSTAMP"]}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(info, handle)
    handle.write("\n")
PY

rm -rf "$out"
# Chalice needs a region to build its model; nothing regional is baked into the template.
# Chalice imports the app to read its routes: no bytecode of this Python in the package.
(cd "$staging" && AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" "$root/infra/runtime.py" chalice package --stage "$stage" \
    --merge-template "$root/infra/minion.yaml" "$out")
"$venv/bin/python" infra/runtime.py bytecode "$out/deployment.zip"
echo "$runtime_info" >"$out/runtime.json"

# A YAML merge template makes Chalice write build/sam.yaml; CI and tests read build/sam.json.
"$venv/bin/python" - "$out/sam.yaml" "$out/sam.json" <<'PY'
import json, sys
import yaml
with open(sys.argv[1], encoding="utf-8") as handle:
    template = yaml.safe_load(handle)
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(template, handle, indent=2)
    handle.write("\n")
PY
rm -f "$out/sam.yaml"

"$venv/bin/cfn-lint" "$out/sam.json" infra/runner-role.yaml
echo "packaged $version ($githash, $buildstamp): build/sam.json, build/deployment.zip"
