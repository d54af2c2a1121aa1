#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the built man pages: each one lints clean (mandoc -Tlint and groff's warnings
through man --warnings), and none has drifted from what it describes: every verb `kiln --help`
lists has a kiln-VERB(1) page naming each option `kiln VERB --help` shows, kiln(1) and kilnd(8)
name their programs' options, kiln.conf(5) names every key of data/kiln.conf, and
org.kiln.Builder1(5) every method, signal and property of the interface XML.

usage: check-man.py --kiln KILN --kilnd KILND --conf KILN_CONF 
                    [--xml XML]... PAGE...
"""
import argparse
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

# What scdoc always writes and mandoc's style check dislikes: an empty paragraph macro after a
# heading. Harmless (roff skips it); anything else mandoc reports fails the test.
SCDOC_NOISE = re.compile(r'WARNING: skipping paragraph macro: PP (empty|after S[HS])$')

failures = []


def fail(message):
    failures.append(message)
    print(f'FAIL: {message}')


def run(argv, **kwargs):
    env = dict(os.environ, LC_ALL='C.UTF-8')
    return subprocess.run(argv, capture_output=True, text=True, env=env, **kwargs)


def lint(page):
    result = run(['mandoc', '-Tlint', '-W', 'warning', page])
    for line in (result.stdout + result.stderr).splitlines():
        if not SCDOC_NOISE.search(line):
            fail(f'mandoc: {line}')
    # groff through man, as lintian does: any warning is printed on stderr.
    result = run(['man', '--warnings', '-E', 'UTF-8', '-l', '-Tutf8', '-Z', page])
    if result.returncode != 0 or result.stderr.strip():
        fail(f'man --warnings {os.path.basename(page)}: {result.stderr.strip() or result.returncode}')


def rendered(page):
    """The page as text, lines wide enough that no word is hyphenated."""
    result = run(['sh', '-c', 'MANWIDTH=1000 man -l "$1" | col -b', 'sh', page])
    return result.stdout


def help_options(argv):
    out = run(argv + ['--help']).stdout
    options = set()
    for line in out.splitlines():
        m = re.match(r'^ +(?:(-[A-Za-z0-9]), +)?(--[A-Za-z0-9-]+)', line)
        if m and m.group(2) != '--help':
            options.add(m.group(2))
            if m.group(1):
                options.add(m.group(1))
    return options, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--kiln', required=True)
    ap.add_argument('--kilnd', required=True)
    ap.add_argument('--conf', required=True)
    ap.add_argument('--xml', action='append', default=[])
    ap.add_argument('pages', nargs='+')
    args = ap.parse_args()

    for tool in ('mandoc', 'man', 'col'):
        if subprocess.run(['sh', '-c', f'command -v {tool}'], capture_output=True).returncode:
            print(f'SKIP: {tool} is not installed')
            return 77

    pages = {os.path.basename(p): p for p in args.pages}
    for page in args.pages:
        lint(page)
    texts = {name: rendered(path) for name, path in pages.items()}

    def needs(page, words, what):
        text = texts.get(page)
        if text is None:
            fail(f'no page {page} ({what})')
            return
        for word in sorted(words):
            if not re.search(r'(?<![\w-])' + re.escape(word) + r'(?![\w-])', text):
                fail(f'{page} does not mention {word} ({what})')

    global_options, kiln_help = help_options([args.kiln])
    verbs = []
    in_verbs = False
    for line in kiln_help.splitlines():
        if line.startswith('Verbs:'):
            in_verbs = True
        elif in_verbs and re.match(r'^  [a-z]', line):
            verbs.append(line.split()[0])
        elif in_verbs and not line.strip():
            in_verbs = False
    if not verbs:
        fail(f'no verbs in `{args.kiln} --help`')
    needs('kiln.1', global_options | set(verbs) | {f'kiln-{v}' for v in verbs}, 'kiln --help')
    for verb in verbs:
        options, _ = help_options([args.kiln, verb])
        needs(f'kiln-{verb}.1', options, f'kiln {verb} --help')

    options, _ = help_options([args.kilnd])
    needs('kilnd.8', options, 'kilnd --help')

    keys = set()
    with open(args.conf, encoding='utf-8') as f:
        for line in f:
            m = re.match(r'^#?([A-Z][A-Za-z0-9]*)=', line)
            if m:
                keys.add(m.group(1))
            m = re.match(r'^\[([A-Za-z0-9]+)\]', line)
            if m:
                keys.add(f'[{m.group(1)}]')
    if not keys:
        fail(f'no keys in {args.conf}')
    needs('kiln.conf.5', keys, os.path.basename(args.conf))

    members = set()
    for path in args.xml:
        for iface in ET.parse(path).getroot().iter('interface'):
            members.add(iface.get('name'))
            for tag in ('method', 'signal', 'property'):
                members.update(e.get('name') for e in iface.iter(tag))
    if not members:
        fail('no interface XML given')
    needs('org.kiln.Builder1.5', members, 'the interface XML')

    # The section in the file name (where meson installs it) is the one the page declares.
    for name, path in pages.items():
        section = name.rsplit('.', 1)[1]
        with open(path, encoding='utf-8') as f:
            th = next((l for l in f if l.startswith('.TH ')), '')
        if not re.match(r'^\.TH "?[^ "]+"? "?' + re.escape(section) + r'"?', th):
            fail(f'{name}: .TH line does not name section {section}: {th.strip()}')

    print(f'{len(pages)} pages checked: {len(failures)} problems')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
