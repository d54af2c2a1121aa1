#!/bin/bash
# Verifies the configured kilnd.service with systemd-analyze verify.
#
# usage: check-unit.sh CONFIGURED_UNIT BUILT_KILND
#
# verify insists that ExecStart= is executable, and the configured unit points
# at the install location, so it checks a copy whose ExecStart= is the kilnd
# in the build tree. verify only warns (exit 0) about unknown keys and bad
# values, so any message that names the unit counts as a failure too.
set -euo pipefail

unit=$1
kilnd=$2

if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP: systemd-analyze not installed"
    exit 77
fi
if [[ ! -x $kilnd ]]; then
    echo "FAIL: $kilnd is not built; build the project before this test" >&2
    exit 1
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# The copy keeps the unit's name: verify derives the unit name from it.
copy=$workdir/kilnd.service
sed "s|^ExecStart=.*/kilnd\\b|ExecStart=$kilnd|" "$unit" > "$copy"
if ! grep -qx "ExecStart=$kilnd" "$copy"; then
    echo "FAIL: no ExecStart=.../kilnd line in $unit" >&2
    exit 1
fi

status=0
output=$(systemd-analyze verify --man=no "$copy" 2>&1) || status=$?
printf '%s\n' "$output"
if (( status != 0 )); then
    echo "FAIL: systemd-analyze verify exited with $status" >&2
    exit 1
fi
if grep -q -e "kilnd.service" -e "$copy" <<<"$output"; then
    echo "FAIL: systemd-analyze verify complained about the unit" >&2
    exit 1
fi
echo "PASS: $unit"
