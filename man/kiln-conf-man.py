#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes kiln.conf(5) in scdoc from data/kiln.conf, so the page lists every key with the
default and the comment the shipped file has, and cannot drift from it.

usage: kiln-conf-man.py DATA_KILN_CONF OUTPUT_SCD

data/kiln.conf's shape: a header comment, then [Group] lines; in a group, comment lines
describe the commented-out keys (#Key=default) that follow them. A key without a comment
is an error: the page would say nothing about it.
"""
import re
import sys

from scd_util import escape, indented, paragraph, paragraphs

KEY = re.compile(r'^#([A-Z][A-Za-z0-9]*)=(.*)$')
GROUP = re.compile(r'^\[([A-Za-z0-9]+)\]$')


def parse(path):
    """[(group, [(keys [(name, default)], comment paragraphs)])]; keys is empty for a comment
    that a blank line separates from what follows before any key (a group's introduction)."""
    groups = []
    comment, keys = [], []

    def flush():
        if keys and not paragraphs(comment):
            sys.exit(f'{path}: no comment describes {", ".join(k for k, _ in keys)}')
        if paragraphs(comment):
            groups[-1][1].append((list(keys), paragraphs(comment)))
        comment.clear()
        keys.clear()

    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.rstrip('\n')
            m = GROUP.match(line)
            if m:
                if groups:
                    flush()
                comment.clear()
                groups.append((m.group(1), []))
                continue
            if not groups:
                continue  # the file's own header
            m = KEY.match(line)
            if m:
                keys.append((m.group(1), m.group(2)))
            elif line.startswith('#'):
                if keys:
                    flush()
                comment.append(line[1:])
            elif not line.strip():
                flush()
            else:
                sys.exit(f'{path}: a key set in the shipped defaults: {line}')
    flush()
    return groups


def main():
    source, output = sys.argv[1], sys.argv[2]
    groups = parse(source)
    out = ['kiln.conf(5)', '',
           '# NAME', '', 'kiln.conf - settings of kilnd', '',
           '# SYNOPSIS', '', '_/etc/kiln/kiln.conf_', '',
           '# DESCRIPTION', '',
           '*kilnd*(8) reads its settings once, at start-up, from _/etc/kiln/kiln.conf_ (or the '
           'file *--config* names). The syntax is that of GLib\'s key files: *[Group]* lines, '
           '_Key_*=*_value_ lines, *#* starts a comment; lists are separated by *;*. '
           'A key that is not set has the default shown here. Restart kilnd after a change '
           '(*systemctl restart kilnd*).', '',
           'The shipped file lists every key with its default, commented out. Paths under '
           '_/usr_ depend on the prefix kiln was built with.', '']
    for group, entries in groups:
        out += [f'# [{group}]', '']
        for keys, text in entries:
            if not keys:
                out += [paragraph(p) + '\n' for p in text]
                continue
            out.append(', '.join(f'*{escape(k)}=*{escape(v)}' for k, v in keys))
            out.append(indented(text))
            out.append('')
    out += ['# SEE ALSO', '', '*kilnd*(8), *kiln*(1), *subuid*(5), *subgid*(5)', '']
    with open(output, 'w', encoding='utf-8') as f:
        f.write('\n'.join(out))


if __name__ == '__main__':
    main()
