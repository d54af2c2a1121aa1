# bash completion for kiln(1)                                -*- shell-script -*-
# SPDX-License-Identifier: Apache-2.0
#
# Verbs and options come from kiln's own --help (kiln --help, kiln VERB --help), so they
# follow the kiln that is installed. Builder names come from kilnd through
# `kiln --no-ask-password containers`: never a password prompt, at most 2 seconds, and
# nothing at all when kilnd cannot be reached.
#
# COMPREPLY=($(compgen ...)) is the completion idiom: candidates are words without blanks.
# `split` is set by _init_completion -s.
# shellcheck shell=bash disable=SC2207,SC2034

# _kiln_run KILN ARG...: kiln's output in the C locale, silent, bounded in time, no stdin.
_kiln_run()
{
    LC_ALL=C timeout 2 "$@" </dev/null 2>/dev/null
}

# _kiln_verbs KILN: the verbs `kiln --help` lists.
_kiln_verbs()
{
    _kiln_run "$1" --help | awk '/^Verbs:/ { v = 1; next } v && /^  [a-z]/ { print $1 } v && /^$/ { v = 0 }'
}

# _kiln_options KILN [VERB]: the options `kiln [VERB] --help` lists, one per line; an option
# that takes a value ends with '=' (--name=, -e=).
_kiln_options()
{
    local line short long value
    # "  -e, --env=K=V     Set ...", "  --no-hosts     Do not ..."
    local pattern='^ +(-[A-Za-z0-9], +)?(--[A-Za-z0-9-]+)(=[^ ]+)? '
    while IFS= read -r line; do
        [[ $line =~ $pattern ]] || continue
        short=${BASH_REMATCH[1]%%,*}
        long=${BASH_REMATCH[2]}
        value=${BASH_REMATCH[3]:+=}
        [[ $long == --help ]] && continue
        printf '%s\n' "$long$value"
        [[ -n $short ]] && printf '%s\n' "$short$value"
    done < <(_kiln_run "$@" --help)
}

# _kiln_images KILN: the names of the caller's images (comma-separated in the last column).
_kiln_images()
{
    _kiln_run "$1" --no-ask-password images | awk 'NR > 1 && $NF != "<none>" { n = split($NF, a, ","); for (i = 1; i <= n; i++) print a[i] }'
}

# _kiln_builders KILN: the names of the caller's builders (the table's last column).
_kiln_builders()
{
    _kiln_run "$1" --no-ask-password containers | awk 'NR > 1 { print $NF }'
}

_kiln()
{
    local cur prev words cword split
    _init_completion -s || return

    local kiln=${words[0]} i verb='' verb_at=0
    # `kiln` as typed, unless that is not something bash can run (a path with ~, say).
    type -P -- "$kiln" >/dev/null || kiln=kiln

    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} != -* ]]; then
            verb=${words[i]}
            verb_at=$i
            break
        fi
    done

    if [[ -z $verb ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$(_kiln_options "$kiln")" -- "$cur"))
            [[ ${COMPREPLY-} == *= ]] && compopt -o nospace
        else
            COMPREPLY=($(compgen -W "$(_kiln_verbs "$kiln")" -- "$cur"))
        fi
        return
    fi

    local -a options=()
    local -A takes_value=()
    local option
    while IFS= read -r option; do
        options+=("$option")
        [[ $option == *= ]] && takes_value[${option%=}]=1
    done < <(_kiln_options "$kiln" "$verb")

    # The value of an option: --opt VALUE, or --opt=VALUE (split by _init_completion -s).
    if [[ -n ${takes_value[$prev]-} ]]; then
        case $prev in
            --isolation) COMPREPLY=($(compgen -W 'oci chroot' -- "$cur")) ;;
            --userns) COMPREPLY=($(compgen -W 'auto host' -- "$cur")) ;;
            --network | --net) COMPREPLY=($(compgen -W 'private none host pasta slirp4netns' -- "$cur")) ;;
            --dns) COMPREPLY=($(compgen -W 'none' -- "$cur")) ;;
            --pid | --ipc | --uts | --cgroupns) COMPREPLY=($(compgen -W 'private host' -- "$cur")) ;;
            --runtime) COMPREPLY=($(compgen -W 'runc crun' -- "$cur")) ;;
            -f | --format) [[ $verb == commit ]] && COMPREPLY=($(compgen -W 'oci docker' -- "$cur")) ;;
            --compression) COMPREPLY=($(compgen -W 'gzip zstd none' -- "$cur")) ;;
            --workingdir) [[ $verb == run ]] || _filedir -d ;;
            --device) _filedir ;;
            -v | --volume) [[ $verb == run ]] && _filedir ;;
            -u | --user) COMPREPLY=($(compgen -u -- "$cur")) ;;
            --group-add) COMPREPLY=($(compgen -W 'keep-groups' -- "$cur")) ;;
        esac
        return
    fi

    # Which argument is being typed: count the words after the verb that are not options or
    # their values. For run, the first is BUILDER and the next starts the command, which
    # takes everything after it (as does anything after a -- that follows BUILDER).
    local npos=0 command_started=0 word
    for ((i = verb_at + 1; i < cword; i++)); do
        word=${words[i]}
        if ((command_started)); then
            continue
        elif [[ $word == -- ]]; then
            ((npos >= 1)) && [[ $verb == run ]] && command_started=1
        elif [[ $word == -* ]]; then
            [[ $word != *=* && -n ${takes_value[$word]-} ]] && ((i++))
        else
            ((npos++))
            ((npos >= 2)) && [[ $verb == run ]] && command_started=1
        fi
    done
    if ((command_started)); then
        compopt -o default
        COMPREPLY=()
        return
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${options[*]}" -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace
        return
    fi

    case $verb in
        from)
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W 'scratch oci: oci-archive: docker-archive:' -- "$cur"))
                _filedir -d
            fi
            ;;
        inspect | config | mount | umount)
            ((npos == 0)) && COMPREPLY=($(compgen -W "$(_kiln_builders "$kiln")" -- "$cur"))
            ;;
        run)
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W "$(_kiln_builders "$kiln")" -- "$cur"))
            else
                compopt -o default
            fi
            ;;
        rm)
            COMPREPLY=($(compgen -W "$(_kiln_builders "$kiln")" -- "$cur"))
            ;;
        copy | add)
            # BUILDER (or BUILDER: to copy out of it) first, then host paths.
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W "$(_kiln_builders "$kiln")" -- "$cur"))
            else
                compopt -o default
            fi
            ;;
        commit)
            ((npos == 0)) && COMPREPLY=($(compgen -W "$(_kiln_builders "$kiln")" -- "$cur"))
            ;;
        rmi)
            COMPREPLY=($(compgen -W "$(_kiln_images "$kiln")" -- "$cur"))
            ;;
        tag)
            ((npos == 0)) && COMPREPLY=($(compgen -W "$(_kiln_images "$kiln")" -- "$cur"))
            ;;
        push)
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W "$(_kiln_images "$kiln")" -- "$cur"))
            elif ((npos == 1)); then
                COMPREPLY=($(compgen -W 'oci-archive: docker-archive: oci:' -- "$cur"))
                compopt -o nospace
            fi
            ;;
    esac
} &&
    complete -F _kiln kiln
