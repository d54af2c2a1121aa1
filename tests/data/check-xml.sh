#!/bin/bash
# Checks that the polkit policy is valid against polkit's DTD and that the
# bus policy is well-formed XML (dbus does not install its busconfig DTD;
# check-bus-policy.py proves that dbus-daemon accepts it).
#
# usage: check-xml.sh POLICY BUS_CONF
set -euo pipefail

policy=$1
bus_conf=$2
dtd=/usr/share/polkit-1/policyconfig-1.dtd

if ! command -v xmllint >/dev/null; then
    echo "SKIP: xmllint not installed (libxml2-utils)"
    exit 77
fi
if [[ ! -r $dtd ]]; then
    echo "SKIP: $dtd missing (polkitd / libpolkit-gobject-1-dev)"
    exit 77
fi

# --nonet: never fetch the DOCTYPE's URL; the local DTD is given explicitly.
xmllint --noout --nonet --dtdvalid "$dtd" "$policy"
xmllint --noout --nonet "$bus_conf"
echo "PASS: $policy $bus_conf"
