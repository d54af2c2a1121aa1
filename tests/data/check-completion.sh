#!/bin/bash
# Checks completion/kiln.bash in a non-interactive bash with bash-completion's functions:
# verbs, options and option values come from the built kiln's --help, and builder names
# (asked from kilnd) are quietly empty, and come within a few seconds, when kilnd cannot
# answer: no bus at all, or a bus that accepts the connection and never replies.
#
# usage: check-completion.sh COMPLETION_FILE KILN
set -uo pipefail

completion=$1
kiln=$2
bash_completion=/usr/share/bash-completion/bash_completion
if [[ ! -r $bash_completion ]]; then
    echo "SKIP: bash-completion is not installed"
    exit 77
fi

workdir=$(mktemp -d)
silent_pid=
cleanup() {
    [[ -n $silent_pid ]] && kill "$silent_pid" 2>/dev/null
    rm -rf "$workdir"
}
trap cleanup EXIT

# kiln found as the completion finds it: by its name in PATH.
mkdir "$workdir/bin"
ln -s "$(realpath "$kiln")" "$workdir/bin/kiln"
# kiln-cli-json.so is found beside the real executable; nothing here needs it.

failures=0

# expect EXPECTED WORD...: completes the last WORD (words split as bash splits them with
# COMP_WORDBREAKS: "--opt" "=" "val") and compares the sorted COMPREPLY with EXPECTED.
expect() {
    local expected=$1
    shift
    local got
    got=$(
        # shellcheck disable=SC1090
        source "$bash_completion"
        # shellcheck disable=SC1090
        source "$completion"
        # compopt only works while readline completes; here it would just complain.
        compopt() { :; }
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"
        COMP_LINE=${COMP_LINE// = /=}
        COMP_POINT=${#COMP_LINE}
        PATH=$workdir/bin:$PATH
        _kiln kiln "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf '%s\n' "${COMPREPLY[@]}" | sort | xargs
    )
    if [[ $got == "$expected" ]]; then
        echo "ok: '$*' -> '$got'"
    else
        echo "FAIL: '$*' -> '$got', expected '$expected'"
        failures=$((failures + 1))
    fi
}

# No kilnd: the bus address points at nothing.
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$workdir/no-bus.sock

expect "rm rmi run" kiln r
expect "commit config containers copy" kiln co
expect "add commit config containers copy from images info inspect mount prune push rm rmi run tag umount version" kiln ''
expect "--no-ask-password" kiln --no
expect "rm rmi run" kiln --no-ask-password r
expect "--terminal" kiln run --ter
expect "--all" kiln rm --al
expect "--json" kiln containers --j
expect "--chmod= --chown=" kiln copy --ch
expect "--chown=" kiln add --cho
expect "info inspect" kiln in
expect "--json" kiln info --j
expect "--json" kiln version --
expect "chroot oci" kiln run --isolation ''
expect "chroot" kiln run --isolation = ch
expect "auto host" kiln from --userns ''
expect "host" kiln config --userns = h
expect "none" kiln run --network n
expect "scratch" kiln from scr
# Options after BUILDER are still kiln's; once the command has started they are the command's.
expect "--terminal" kiln run -e A=1 mybuilder -e B=2 --ter
expect "" kiln run mybuilder ls --ter
expect "" kiln run mybuilder -- --ter
# Builder names: nobody to ask, so none, and no error on the terminal.
expect "" kiln rm ''
expect "" kiln run ''
# Images out: image names (none here), destinations, the commit's formats.
expect "" kiln rmi ''
expect "docker-archive: oci-archive: oci:" kiln push myimage ''
expect "docker oci" kiln commit --format ''
expect "zstd" kiln commit --compression z

# A bus that accepts the connection and never answers: the names must come back empty within
# the completion's 2-second bound, not after sd-bus's 25-second call timeout.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
time.sleep(120)
' "$workdir/silent.sock" </dev/null >/dev/null 2>&1 &
silent_pid=$!
for _ in $(seq 50); do [[ -S $workdir/silent.sock ]] && break; sleep 0.1; done
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$workdir/silent.sock
start=$(date +%s%N)
expect "" kiln inspect ''
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
if ((elapsed_ms > 5000)); then
    echo "FAIL: completing a builder name against a silent bus took ${elapsed_ms} ms"
    failures=$((failures + 1))
else
    echo "ok: a silent bus costs ${elapsed_ms} ms"
fi

if ((failures)); then
    echo "$failures failed"
    exit 1
fi
echo "PASS"
